"""torchvision and timm Vision Transformer names -> cnnx names.

torchvision: `conv_proj`, `class_token`, `encoder.pos_embedding`,
`encoder.layers.encoder_layer_{i}.{ln_1, self_attention.{in_proj_*, out_proj}, ln_2, mlp.{0,3}}`,
`encoder.ln`, `heads.head`.
timm: `patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.{i}.{norm1, attn.{qkv, proj}, norm2,
mlp.{fc1, fc2}}`, `norm`, `head`.
"""

from cnnx.convert.core import TorchMapping, register_mapping


def _special(key, array):
    """Tensors whose leaf names the generic rules do not know."""
    if key in ("class_token", "cls_token"):
        return [(("params", "cls_token"), array)]
    if key in ("encoder.pos_embedding", "pos_embed"):
        return [(("params", "pos_embed"), array)]
    prefix = "encoder.layers.encoder_layer_"
    if key.startswith(prefix) and ".self_attention.in_proj_" in key:
        block = key[len(prefix) :].split(".", 1)[0]
        # nn.MultiheadAttention packs [q | k | v] like timm's qkv Linear: (3D, D) -> (D, 3D).
        if key.endswith("in_proj_weight"):
            return [(("params", f"block{block}", "attn", "qkv", "kernel"), array.T)]
        return [(("params", f"block{block}", "attn", "qkv", "bias"), array)]
    return None


register_mapping(
    "vit",
    TorchMapping(
        renames=(
            (r"^conv_proj$", "patch_embed"),
            (r"^patch_embed\.proj$", "patch_embed"),
            (r"^encoder\.layers\.encoder_layer_(\d+)\.ln_1$", r"block\1/norm1"),
            (r"^encoder\.layers\.encoder_layer_(\d+)\.ln_2$", r"block\1/norm2"),
            (
                r"^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.out_proj$",
                r"block\1/attn/proj",
            ),
            (r"^encoder\.layers\.encoder_layer_(\d+)\.mlp\.0$", r"block\1/mlp/fc1"),
            (r"^encoder\.layers\.encoder_layer_(\d+)\.mlp\.3$", r"block\1/mlp/fc2"),
            (r"^blocks\.(\d+)\.", r"block\1."),
            (r"^encoder\.ln$", "norm"),
            (r"^heads\.head$", "head/fc"),
            (r"^head$", "head/fc"),
        ),
        custom=_special,
    ),
)
