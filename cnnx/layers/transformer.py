"""Transformer building blocks shared by ViT and Swin: LayerNorm, multi-head self-attention, MLP.

Names follow timm (`qkv`, `proj`, `fc1`, `fc2`) so torchvision and timm weights map onto them
with plain renames. Activations use the exact (erf) GELU of torch's `nn.GELU()`, not Flax's
tanh approximation, so converted weights give the same logits.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def layer_norm(epsilon: float, name: str, dtype: Any = jnp.float32) -> nn.LayerNorm:
    """A LayerNorm over the last (channel) axis with torch's two-pass variance.

    Args:
      epsilon: added to the variance (torchvision ViT/ConvNeXt: 1e-6, Swin: 1e-5).
      name: module name.
      dtype: compute dtype; scale and bias stay float32.
    """
    # use_fast_variance=False: E[(x - mean)^2] like torch, not E[x^2] - mean^2, which loses
    # precision on large activations and breaks 1e-4 parity.
    return nn.LayerNorm(epsilon=epsilon, use_fast_variance=False, dtype=dtype, name=name)


def gelu(x):
    """torch's default (exact, erf-based) GELU."""
    return nn.gelu(x, approximate=False)


class Mlp(nn.Module):
    """Linear, GELU, dropout, linear, dropout: the transformer feed-forward block."""

    hidden_features: int
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """The feed-forward block.

        Args:
          x: (B, N, D) tokens.
          train: dropout on (needs a 'dropout' rng).

        Returns:
          (B, N, D).
        """
        out_features = x.shape[-1]
        x = nn.Dense(self.hidden_features, dtype=self.dtype, name="fc1")(x)
        x = gelu(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(out_features, dtype=self.dtype, name="fc2")(x)
        return nn.Dropout(self.dropout_rate, deterministic=not train)(x)


def split_heads(qkv, num_heads: int):
    """(..., N, 3·C) packed projections -> q, k, v of shape (..., heads, N, C / heads).

    The packing is torch's: [q | k | v] along the channel axis, each split into heads.
    """
    *lead, n, c3 = qkv.shape
    head_dim = c3 // (3 * num_heads)
    qkv = qkv.reshape(*lead, n, 3, num_heads, head_dim)
    qkv = jnp.moveaxis(qkv, -3, 0)  # (3, ..., N, heads, head_dim)
    q, k, v = (jnp.swapaxes(t, -3, -2) for t in qkv)
    return q, k, v


def attend(q, k, v, bias=None, dropout: nn.Module | None = None):
    """Scaled dot-product attention over (..., heads, N, head_dim) tensors.

    Args:
      q, k, v: queries, keys, values.
      bias: added to the logits before the softmax (relative position bias, masks).
      dropout: applied to the attention weights.

    Returns:
      (..., N, heads · head_dim) with heads concatenated in order.
    """
    q = q * q.shape[-1] ** -0.5
    logits = jnp.einsum("...qd,...kd->...qk", q, k)
    if bias is not None:
        logits = logits + bias
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    if dropout is not None:
        weights = dropout(weights)
    out = jnp.einsum("...qk,...kd->...qd", weights, v)
    out = jnp.swapaxes(out, -3, -2)  # (..., N, heads, head_dim)
    return out.reshape(*out.shape[:-2], -1)


class MultiHeadSelfAttention(nn.Module):
    """Global multi-head self-attention with one packed `qkv` projection (ViT).

    torch's `nn.MultiheadAttention.in_proj_weight` and timm's `attn.qkv` both pack
    [q | k | v] in one matrix; keeping that packing makes conversion a transpose.
    """

    num_heads: int
    attention_dropout: float = 0.0
    qkv_bias: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        """Self-attention over all tokens.

        Args:
          x: (B, N, D) tokens (D divisible by `num_heads`).
          train: attention dropout on (needs a 'dropout' rng).

        Returns:
          (B, N, D).
        """
        channels = x.shape[-1]
        if channels % self.num_heads:
            raise ValueError(f"{channels} channels do not split into {self.num_heads} heads")
        qkv = nn.Dense(3 * channels, use_bias=self.qkv_bias, dtype=self.dtype, name="qkv")(x)
        q, k, v = split_heads(qkv, self.num_heads)
        out = attend(q, k, v, dropout=nn.Dropout(self.attention_dropout, deterministic=not train))
        return nn.Dense(channels, dtype=self.dtype, name="proj")(out)
