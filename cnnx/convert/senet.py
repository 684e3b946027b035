"""timm `legacy_senet` names (Cadene's SENet port) -> cnnx names (`cnnx.models.senet`).

timm: layer0.conv1/bn1 (and conv2/3, bn2/3 for SENet-154), layerN.M.conv1..3/bn1..3,
layerN.M.se_module.fc1/fc2, layerN.0.downsample.0/1, last_linear.
"""

from cnnx.convert.core import TorchMapping, register_mapping

register_mapping(
    "senet",
    TorchMapping(
        renames=(
            (r"^layer0\.conv(\d)$", r"stem\1/conv"),
            (r"^layer0\.bn(\d)$", r"stem\1/bn"),
            (r"^layer(\d+)\.(\d+)\.conv(\d)$", r"stage\1_block\2/conv\3/conv"),
            (r"^layer(\d+)\.(\d+)\.bn(\d)$", r"stage\1_block\2/conv\3/bn"),
            (r"^layer(\d+)\.(\d+)\.se_module\.(fc\d)$", r"stage\1_block\2/se/\3"),
            (r"^layer(\d+)\.(\d+)\.downsample\.0$", r"stage\1_block\2/downsample/conv"),
            (r"^layer(\d+)\.(\d+)\.downsample\.1$", r"stage\1_block\2/downsample/bn"),
            (r"^last_linear$", "head/fc"),
        )
    ),
)
