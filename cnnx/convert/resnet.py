"""torchvision ResNet / ResNeXt / Wide ResNet names -> cnnx names."""

from cnnx.convert.core import TorchMapping, register_mapping

register_mapping(
    "resnet",
    TorchMapping(
        renames=(
            (r"^conv1$", "stem/conv"),
            (r"^bn1$", "stem/bn"),
            (r"^layer(\d+)\.(\d+)\.conv(\d)$", r"stage\1_block\2/conv\3/conv"),
            (r"^layer(\d+)\.(\d+)\.bn(\d)$", r"stage\1_block\2/conv\3/bn"),
            (r"^layer(\d+)\.(\d+)\.downsample\.0$", r"stage\1_block\2/downsample/conv"),
            (r"^layer(\d+)\.(\d+)\.downsample\.1$", r"stage\1_block\2/downsample/bn"),
            (r"^fc$", "head/fc"),
        )
    ),
)
