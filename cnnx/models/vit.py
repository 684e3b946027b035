"""Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale", ICLR 2021; arXiv 2020), Table 1, plus DeiT's small/tiny widths (Touvron
et al. 2021, Table 1).

  name        layers  hidden  MLP    heads  patch   reference
  vit_ti_16   12      192     768    3      16      timm vit_tiny_patch16_224
  vit_s_16    12      384     1536   6      16      timm vit_small_patch16_224
  vit_b_16    12      768     3072   12     16      torchvision
  vit_b_32    12      768     3072   12     32      torchvision
  vit_l_16    24      1024    4096   16     16      torchvision

Patch embedding (a p×p stride-p convolution), a learnt class token, learnt 1-D position
embeddings, pre-norm encoder blocks (LayerNorm eps 1e-6, multi-head self-attention, GELU MLP),
a final LayerNorm, and a linear head on the class token.

Resolution: the position embedding is created for the grid of the `image_size` field (the
spec's resolution), so the parameters and checkpoints do not depend on the input size.
A different input size gives a different grid; the embedding of the patches is then resized
bicubically at call time (the class token's embedding is kept), as for fine-tuning at a higher
resolution (§3.2). `resize_pos_embed` does the same once on a parameter tree, for FixRes-style
fine-tuning at a new `image_size`.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnx.layers import ClassifierHead, DropPath, drop_path_rates, maybe_remat
from cnnx.layers.conv import Conv
from cnnx.layers.transformer import Mlp, MultiHeadSelfAttention, layer_norm
from cnnx.models import layer_groups
from cnnx.models.contract import Classifier
from cnnx.models.registry import INCEPTION_MEAN, INCEPTION_STD, register_family
from cnnx.models.scaling import round_filters, round_repeats

LN_EPS = 1e-6


def _grid(grid) -> tuple[int, int]:
    return (grid, grid) if isinstance(grid, int) else tuple(grid)


def resample_pos_embed(pos_embed, new_grid, num_prefix_tokens: int = 1):
    """Resizes a (1, prefix + H·W, D) position embedding to a new patch grid.

    The patch embeddings are treated as an H×W image of D channels and resized bicubically
    (antialiased when shrinking); the prefix (class token) embeddings are kept as they are.
    The old grid is taken to be square.

    Args:
      pos_embed: the embedding, (1, prefix + H·W, D).
      new_grid: int or (rows, cols) of the new patch grid.
      num_prefix_tokens: leading tokens that are not patches (1: the class token).

    Returns:
      The (1, prefix + rows·cols, D) embedding.
    """
    rows, cols = _grid(new_grid)
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = round(patches.shape[1] ** 0.5)
    if old * old != patches.shape[1]:
        raise ValueError(f"position embedding of {patches.shape[1]} patches is not a square grid")
    if (old, old) == (rows, cols):
        return pos_embed
    dim = patches.shape[-1]
    image = patches.reshape(1, old, old, dim).astype(jnp.float32)
    image = jax.image.resize(image, (1, rows, cols, dim), method="bicubic", antialias=True)
    patches = image.reshape(1, rows * cols, dim).astype(pos_embed.dtype)
    return jnp.concatenate([prefix, patches], axis=1)


def resize_pos_embed(params, new_grid, num_prefix_tokens: int = 1):
    """Returns `params` (a ViT's 'params' tree) with its position embedding resized.

    Use it to fine-tune at a new resolution with parameters shaped for it (FixRes, Touvron et
    al. 2019): create the model with `image_size=new_grid * patch_size` and load the result.

    Args:
      params: the model's 'params' collection (must contain `pos_embed` at its top level).
      new_grid: int or (rows, cols) of the new patch grid.
      num_prefix_tokens: leading non-patch tokens (1: the class token).

    Returns:
      A new params dict; every other leaf is shared with the input.
    """
    new = dict(params)
    new["pos_embed"] = resample_pos_embed(params["pos_embed"], new_grid, num_prefix_tokens)
    return new


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + MSA(LN(x)), then x + MLP(LN(x))."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout: float = 0.0
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """One encoder block.

        Args:
          x: (B, N, D) tokens.
          train: stochastic depth and dropout on (needs a 'dropout' rng when their rates are > 0).

        Returns:
          (B, N, D).
        """
        y = layer_norm(LN_EPS, "norm1", self.dtype)(x)
        y = MultiHeadSelfAttention(
            self.num_heads, self.attention_dropout, dtype=self.dtype, name="attn"
        )(y, train=train)
        y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
        x = x + DropPath(self.drop_path_rate)(y, train=train)
        y = layer_norm(LN_EPS, "norm2", self.dtype)(x)
        y = Mlp(self.mlp_dim, self.dropout_rate, dtype=self.dtype, name="mlp")(y, train=train)
        return x + DropPath(self.drop_path_rate)(y, train=train)


class VisionTransformer(Classifier):
    """ViT with a class token (torchvision / timm layout).

    Attributes:
      patch_size: side of the square patches.
      hidden_dim: token width D.
      mlp_dim: hidden width of each block's MLP.
      num_layers: encoder blocks.
      num_heads: attention heads (head width D / heads; 64 in every published variant).
      image_size: the resolution the position embedding is created for.
      num_classes: classifier outputs; 0 returns the normalised class token.
      width_mult: scales D by whole heads (`round_filters` with the head width as divisor, so
        heads stay 64 wide: vit_b at 0.25 is vit_ti) and the MLP width.
      depth_mult: scales the number of blocks (`round_repeats`).
      encoder_dropout: dropout after the embeddings, the attention and the MLP layers (torchvision
        `dropout`; 0 in the published models).
      attention_dropout: dropout on the attention weights.
    """

    patch_size: int = 16
    hidden_dim: int = 768
    mlp_dim: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    image_size: int = 224
    encoder_dropout: float = 0.0
    attention_dropout: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        head_dim = self.hidden_dim // self.num_heads
        hidden = round_filters(self.hidden_dim, self.width_mult, divisor=head_dim)
        heads = hidden // head_dim
        mlp_dim = round_filters(self.mlp_dim, self.width_mult)
        depth = round_repeats(self.num_layers, self.depth_mult)
        p = self.patch_size
        if x.shape[1] < p or x.shape[2] < p:
            raise ValueError(f"input {x.shape[1:3]} is smaller than one {p}×{p} patch")
        x = Conv(hidden, (p, p), (p, p), padding="VALID", dtype=self.dtype, name="patch_embed")(x)
        b, rows, cols, _ = x.shape
        x = x.reshape(b, rows * cols, hidden)  # row-major patch order, as torch's flatten(2)
        cls = self.param("cls_token", nn.initializers.zeros, (1, 1, hidden), jnp.float32)
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, hidden)), x], axis=1)
        grid = self.image_size // p
        pos = self.param(
            "pos_embed", nn.initializers.normal(0.02), (1, 1 + grid * grid, hidden), jnp.float32
        )
        pos = resample_pos_embed(pos, (rows, cols))
        x = x + pos.astype(x.dtype)
        x = nn.Dropout(self.encoder_dropout, deterministic=not train)(x)
        for i, rate in enumerate(drop_path_rates(self.drop_path_rate, depth)):
            x = maybe_remat(EncoderBlock, self.remat)(
                heads,
                mlp_dim,
                dropout_rate=self.encoder_dropout,
                attention_dropout=self.attention_dropout,
                drop_path_rate=rate,
                dtype=self.dtype,
                name=f"block{i}",
            )(x, train=train)
        x = layer_norm(LN_EPS, "norm", self.dtype)(x)
        return ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x[:, 0], train=train
        )


_PAPER = "Dosovitskiy et al. 2020, An Image is Worth 16x16 Words"
_TV_TOP1 = "torchvision IMAGENET1K_V1 weights"

# name: (patch, hidden, MLP, layers, heads, reference, count, crop_pct, torchvision V1 top-1)
TABLE = {
    "vit_ti_16": (16, 192, 768, 12, 3, "timm:vit_tiny_patch16_224", 5_717_416, 0.9, None),
    "vit_s_16": (16, 384, 1536, 12, 6, "timm:vit_small_patch16_224", 22_050_664, 0.9, None),
    "vit_b_16": (16, 768, 3072, 12, 12, "torchvision:vit_b_16", 86_567_656, 0.875, 81.072),
    "vit_b_32": (32, 768, 3072, 12, 12, "torchvision:vit_b_32", 88_224_232, 0.875, 75.912),
    "vit_l_16": (16, 1024, 4096, 24, 16, "torchvision:vit_l_16", 304_326_632, 224 / 242, 79.662),
}

register_family(
    "vit",
    VisionTransformer,
    {
        name: dict(
            kwargs=dict(
                patch_size=p, hidden_dim=d, mlp_dim=m, num_layers=n, num_heads=h, image_size=224
            ),
            reference=ref,
            param_count=count,
            crop_pct=crop,
            min_resolution=p,
            top1=(top1, _TV_TOP1) if top1 else None,
            # timm's ViT weights expect (x - 0.5) / 0.5 (their pretrained_cfg).
            **(dict(mean=INCEPTION_MEAN, std=INCEPTION_STD) if ref.startswith("timm:") else {}),
            paper=_PAPER if d >= 768 else _PAPER + "; widths of Touvron et al. 2021 (DeiT)",
        )
        for name, (p, d, m, n, h, ref, count, crop, top1) in TABLE.items()
    },
    year=2020,
    test_resolution=32,
    layer_groups=layer_groups.VIT,
)
