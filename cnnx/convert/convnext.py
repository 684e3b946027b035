"""torchvision and timm ConvNeXt names -> cnnx names.

torchvision: `features.0` stem, `features.{1,3,5,7}` stages, `features.{2,4,6}` downsampling,
`classifier.{0,2}` head norm and linear; layer scale is `(C, 1, 1)`.
timm (`convnext_xlarge`): `stem.{0,1}`, `stages.{i}.downsample.{0,1}`, `stages.{i}.blocks.{j}`,
`head.norm`, `head.fc`; layer scale is `gamma` `(C,)`.
"""

from cnnx.convert.core import TorchMapping, register_mapping

_BLOCK = (
    ("block.0", "dwconv"),
    ("block.2", "norm"),
    ("block.3", "pwconv1"),
    ("block.5", "pwconv2"),
)
_TIMM_BLOCK = (
    ("conv_dw", "dwconv"),
    ("norm", "norm"),
    ("mlp.fc1", "pwconv1"),
    ("mlp.fc2", "pwconv2"),
)

_renames = [
    (r"^features\.0\.0$", "stem_conv"),
    (r"^features\.0\.1$", "stem_norm"),
    (r"^stem\.0$", "stem_conv"),
    (r"^stem\.1$", "stem_norm"),
    (r"^classifier\.0$", "head_norm"),
    (r"^classifier\.2$", "head/fc"),
    (r"^head\.norm$", "head_norm"),
    (r"^head\.fc$", "head/fc"),
]
for _stage in range(1, 5):
    _tv = 2 * _stage - 1  # torchvision index of the stage's blocks
    for _src, _dst in _BLOCK:
        _renames.append((rf"^features\.{_tv}\.(\d+)\.{_src}$", rf"stage{_stage}_block\1/{_dst}"))
    for _src, _dst in _TIMM_BLOCK:
        _renames.append(
            (rf"^stages\.{_stage - 1}\.blocks\.(\d+)\.{_src}$", rf"stage{_stage}_block\1/{_dst}")
        )
    if _stage > 1:
        for _k, _part in ((0, "norm"), (1, "conv")):
            _renames.append((rf"^features\.{_tv - 1}\.{_k}$", f"downsample{_stage}_{_part}"))
            _renames.append(
                (rf"^stages\.{_stage - 1}\.downsample\.{_k}$", f"downsample{_stage}_{_part}")
            )

_MAPPING = TorchMapping(renames=tuple(_renames))


def _layer_scale(key, array):
    """torchvision `features.S.J.layer_scale` (C, 1, 1) / timm `...blocks.J.gamma` (C,)."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf not in ("layer_scale", "gamma"):
        return None
    module = key.rsplit(".", 1)[0]
    if leaf == "gamma":
        module += ".conv_dw"  # reuse the block rule, then drop the layer name
    else:
        module += ".block.0"
    path = _MAPPING.module_path(module).split("/")[:-1]
    return [(("params", *path, "layer_scale"), array.reshape(-1))]


register_mapping("convnext", TorchMapping(renames=_MAPPING.renames, custom=_layer_scale))
