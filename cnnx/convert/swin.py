"""torchvision Swin Transformer (v1) names -> cnnx names.

`features.0.{0,2}` patch embedding conv and norm, `features.{1,3,5,7}.{j}` the blocks of
stages 1-4, `features.{2,4,6}` patch merging before stages 2-4, `norm`, `head`. The
`relative_position_index` buffers are constants recomputed by cnnx, so they are skipped.
"""

from cnnx.convert.core import TorchMapping, register_mapping

_renames = [
    (r"^features\.0\.0$", "patch_embed"),
    (r"^features\.0\.2$", "patch_norm"),
    (r"^head$", "head/fc"),
]
for _stage in range(1, 5):
    _renames.append((rf"^features\.{2 * _stage - 1}\.(\d+)\.", rf"stage{_stage}_block\1."))
    if _stage > 1:
        _renames.append((rf"^features\.{2 * _stage - 2}\.", f"merge{_stage}."))
_renames += [(r"\.mlp\.0$", ".mlp.fc1"), (r"\.mlp\.3$", ".mlp.fc2")]


def _bias_table(key, array):
    """`...attn.relative_position_bias_table` is a bare parameter: place it under its module."""
    if not key.endswith(".relative_position_bias_table"):
        return None
    module = _MAPPING.module_path(key.rsplit(".", 1)[0]).split("/")
    return [(("params", *module, "relative_position_bias_table"), array)]


_MAPPING = register_mapping(
    "swin",
    TorchMapping(renames=tuple(_renames), skip=(r"relative_position_index$",), custom=_bias_table),
)
