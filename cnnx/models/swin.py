"""Swin Transformer (Liu, Lin, Cao, Hu, Wei, Zhang, Lin & Guo, "Swin Transformer: Hierarchical
Vision Transformer using Shifted Windows", ICCV 2021), Table 7 / §3.3:

  swin_t  C=96   layers (2, 2, 6, 2)    heads (3, 6, 12, 24)
  swin_s  C=96   layers (2, 2, 18, 2)   heads (3, 6, 12, 24)
  swin_b  C=128  layers (2, 2, 18, 2)   heads (4, 8, 16, 32)

A 4×4 stride-4 patch embedding with LayerNorm, four stages of transformer blocks that attend
within 7×7 windows, alternating regular (W-MSA) and half-window shifted (SW-MSA) windows, with
a learnt relative position bias per head, and patch merging (2×2 neighbours concatenated,
LayerNorm, linear 4C -> 2C) between stages. LayerNorm eps 1e-5; head: LayerNorm, global
average pooling, linear. Head width is 32 in every variant.

The layout is torchvision's (v1), including how it handles inputs that are not multiples of
the window: each block pads its input with zeros at the bottom/right to a window multiple
(padded tokens take part in attention unmasked, as in torchvision), and drops the shift when a
single window covers the padded map. Patch merging pads odd maps by one. Relative position
indices and shift masks are constants computed from the static shapes, not parameters.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from cnnx.layers import ClassifierHead, DropPath, drop_path_rates, maybe_remat
from cnnx.layers.conv import Conv
from cnnx.layers.dense import Dense
from cnnx.layers.transformer import Mlp, attend, layer_norm, split_heads
from cnnx.models import layer_groups
from cnnx.models.contract import Classifier
from cnnx.models.registry import register_family
from cnnx.models.scaling import round_filters, round_repeats

LN_EPS = 1e-5


def relative_position_index(window: int) -> np.ndarray:
    """(w², w²) index into the (2w-1)² bias table for each (query, key) pair of a window."""
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij"))
    coords = coords.reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def shift_mask(height: int, width: int, window: int, shift: tuple[int, int]) -> np.ndarray:
    """(windows, w², w²) additive mask: -100 between tokens from different regions.

    After the cyclic shift, a window at the bottom/right edge holds tokens that were not
    neighbours in the image; the mask stops them attending to each other (§3.2). An axis with
    no shift is a single region along that axis.
    """

    def bands(s):
        return ((0, -window), (-window, -s), (-s, None)) if s else ((0, None),)

    regions = np.zeros((height, width), np.float32)
    count = 0
    for r in bands(shift[0]):
        for c in bands(shift[1]):
            regions[r[0] : r[1], c[0] : c[1]] = count
            count += 1
    regions = regions.reshape(height // window, window, width // window, window)
    regions = regions.transpose(0, 2, 1, 3).reshape(-1, window * window)
    diff = regions[:, None, :] - regions[:, :, None]
    return np.where(diff != 0, -100.0, 0.0).astype(np.float32)


class WindowAttention(nn.Module):
    """(Shifted) window multi-head self-attention with a relative position bias."""

    num_heads: int
    window: int = 7
    shift: int = 0
    attention_dropout: float = 0.0
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """Self-attention within each (shifted) window.

        Args:
          x: (B, H, W, C) tokens on their grid.
          train: attention and projection dropout on (needs a 'dropout' rng).

        Returns:
          (B, H, W, C).
        """
        b, h, w, c = x.shape
        ws = self.window
        x = jnp.pad(x, ((0, 0), (0, -h % ws), (0, -w % ws), (0, 0)))
        ph, pw = x.shape[1:3]
        # One window covering the whole (padded) map: shifting would only wrap it around.
        shift = (self.shift if ws < ph else 0, self.shift if ws < pw else 0)
        if any(shift):
            x = jnp.roll(x, (-shift[0], -shift[1]), axis=(1, 2))
        # Window partition: (B, nH, ws, nW, ws, C) -> (B, windows, ws², C).
        x = x.reshape(b, ph // ws, ws, pw // ws, ws, c).transpose(0, 1, 3, 2, 4, 5)
        x = x.reshape(b, -1, ws * ws, c)
        qkv = Dense(3 * c, dtype=self.dtype, name="qkv")(x)
        q, k, v = split_heads(qkv, self.num_heads)  # (B, windows, heads, ws², head_dim)
        table = self.param(
            "relative_position_bias_table",
            nn.initializers.truncated_normal(0.02),
            ((2 * ws - 1) ** 2, self.num_heads),
            jnp.float32,
        )
        index = relative_position_index(ws)
        bias = table[index.reshape(-1)].reshape(ws * ws, ws * ws, self.num_heads)
        bias = bias.transpose(2, 0, 1).astype(self.dtype)  # (heads, ws², ws²)
        if any(shift):
            mask = shift_mask(ph, pw, ws, shift)
            bias = bias[None, None] + jnp.asarray(mask, self.dtype)[None, :, None]
        out = attend(
            q, k, v, bias, nn.Dropout(self.attention_dropout, deterministic=not train)
        )  # (B, windows, ws², C)
        out = Dense(c, dtype=self.dtype, name="proj")(out)
        out = nn.Dropout(self.dropout_rate, deterministic=not train)(out)
        out = out.reshape(b, ph // ws, pw // ws, ws, ws, c).transpose(0, 1, 3, 2, 4, 5)
        out = out.reshape(b, ph, pw, c)
        if any(shift):
            out = jnp.roll(out, shift, axis=(1, 2))
        return out[:, :h, :w]


class SwinBlock(nn.Module):
    """x + W-MSA(LN(x)), then x + MLP(LN(x)) (MLP ratio 4), each with stochastic depth."""

    num_heads: int
    window: int = 7
    shift: int = 0
    mlp_ratio: float = 4.0
    dropout_rate: float = 0.0
    attention_dropout: float = 0.0
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """One Swin block.

        Args:
          x: (B, H, W, C) tokens on their grid.
          train: stochastic depth and dropout on (needs a 'dropout' rng when their rates are > 0).

        Returns:
          (B, H, W, C).
        """
        y = layer_norm(LN_EPS, "norm1", self.dtype)(x)
        y = WindowAttention(
            self.num_heads,
            self.window,
            self.shift,
            self.attention_dropout,
            self.dropout_rate,
            dtype=self.dtype,
            name="attn",
        )(y, train=train)
        x = x + DropPath(self.drop_path_rate)(y, train=train)
        y = layer_norm(LN_EPS, "norm2", self.dtype)(x)
        y = Mlp(int(x.shape[-1] * self.mlp_ratio), self.dropout_rate, self.dtype, name="mlp")(
            y, train=train
        )
        return x + DropPath(self.drop_path_rate)(y, train=train)


class PatchMerging(nn.Module):
    """Concatenates each 2×2 neighbourhood (4C), LayerNorm, then a linear map to 2C."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        """Halves the token grid and doubles the width.

        Args:
          x: (B, H, W, C) tokens (odd H or W padded).

        Returns:
          (B, ceil(H / 2), ceil(W / 2), 2C).
        """
        h, w, c = x.shape[1:]
        x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        # torchvision's order: (0,0), (1,0), (0,1), (1,1) offsets (row, col).
        x = jnp.concatenate(
            [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1
        )
        x = layer_norm(LN_EPS, "norm", self.dtype)(x)
        return Dense(2 * c, use_bias=False, dtype=self.dtype, name="reduction")(x)


class SwinTransformer(Classifier):
    """Swin Transformer v1 in torchvision's layout.

    Attributes:
      embed_dim: channels C of the first stage (doubled at each merge).
      depths: blocks per stage (pairs of W-MSA and SW-MSA blocks).
      num_heads: heads per stage.
      window: window side (7).
      patch_size: side of the patch embedding (4).
      width_mult: scales C by whole 32-wide heads (`round_filters` with divisor 32), so head
        width stays 32 and every stage keeps C·2^i channels.
      depth_mult: scales the number of block *pairs* per stage (`round_repeats`), so shifted
        and regular windows keep alternating.
      drop_path_rate: stochastic depth of the last block, linear in the block index
        (torchvision: 0.2 / 0.3 / 0.5 for T / S / B).
    """

    embed_dim: int = 96
    depths: Sequence[int] = (2, 2, 6, 2)
    num_heads: Sequence[int] = (3, 6, 12, 24)
    window: int = 7
    patch_size: int = 4
    mlp_ratio: float = 4.0

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.astype(self.dtype)
        head_dim = self.embed_dim // self.num_heads[0]
        dim = round_filters(self.embed_dim, self.width_mult, divisor=head_dim)
        depths = [2 * round_repeats(-(-d // 2), self.depth_mult) for d in self.depths]
        if self.depth_mult == 1.0:
            depths = list(self.depths)
        rates = iter(drop_path_rates(self.drop_path_rate, sum(depths)))
        p = self.patch_size
        x = Conv(dim, (p, p), (p, p), padding="VALID", dtype=self.dtype, name="patch_embed")(x)
        x = layer_norm(LN_EPS, "patch_norm", self.dtype)(x)
        for i, depth in enumerate(depths):
            if i > 0:
                x = PatchMerging(dtype=self.dtype, name=f"merge{i + 1}")(x)
            heads = x.shape[-1] // head_dim
            for j in range(depth):
                x = maybe_remat(SwinBlock, self.remat)(
                    heads,
                    self.window,
                    shift=0 if j % 2 == 0 else self.window // 2,
                    mlp_ratio=self.mlp_ratio,
                    drop_path_rate=next(rates),
                    dtype=self.dtype,
                    name=f"stage{i + 1}_block{j}",
                )(x, train=train)
        x = layer_norm(LN_EPS, "norm", self.dtype)(x)
        return ClassifierHead(self.num_classes, self.dropout_rate, dtype=self.dtype, name="head")(
            x, train=train
        )


_PAPER = "Liu et al. 2021, Swin Transformer: Hierarchical Vision Transformer using Shifted Windows"
_TV_TOP1 = "torchvision IMAGENET1K_V1 weights"

# name: (C, depths, heads, drop path, param count, crop_pct, torchvision V1 top-1)
TABLE = {
    "swin_t": (96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2, 28_288_354, 224 / 232, 81.474),
    "swin_s": (96, (2, 2, 18, 2), (3, 6, 12, 24), 0.3, 49_606_258, 224 / 246, 83.196),
    "swin_b": (128, (2, 2, 18, 2), (4, 8, 16, 32), 0.5, 87_768_224, 224 / 238, 83.582),
}

register_family(
    "swin",
    SwinTransformer,
    {
        name: dict(
            kwargs=dict(embed_dim=c, depths=depths, num_heads=heads, drop_path_rate=dp),
            drop_path=dp,
            reference=f"torchvision:{name}",
            param_count=count,
            crop_pct=crop,
            top1=(top1, _TV_TOP1),
        )
        for name, (c, depths, heads, dp, count, crop, top1) in TABLE.items()
    },
    paper=_PAPER,
    year=2021,
    layer_groups=layer_groups.SWIN,
    min_resolution=32,
    test_resolution=32,
)
