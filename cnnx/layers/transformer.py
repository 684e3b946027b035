"""Transformer building blocks shared by ViT and Swin: LayerNorm, multi-head self-attention, MLP.

Names follow timm (`qkv`, `proj`, `fc1`, `fc2`) so torchvision and timm weights map onto them
with plain renames. Activations use the exact (erf) GELU of torch's `nn.GELU()`, not Flax's
tanh approximation, so converted weights give the same logits.

LayerNorm, GELU and attention run on the platform's route (`cnnx.backends`): on XLA:CPU
formulations with their own gradients (`CNNX_CPU_GRADS`; why and what they gained:
docs/xla_cpu.md, "ViT"), elsewhere `nn.LayerNorm`, `jax.nn.gelu` and softmax attention under
autodiff. Values agree to float rounding, parameters are the same.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnnx import backends
from cnnx.layers.dense import Dense


def layer_norm(epsilon: float, name: str, dtype: Any = jnp.float32) -> nn.Module:
    """A LayerNorm over the last (channel) axis with torch's two-pass variance.

    `nn.LayerNorm(use_fast_variance=False)`, or the platform's module with the same
    parameters and values (`cnnx.backends.layer_norm`).

    Args:
      epsilon: added to the variance (torchvision ViT/ConvNeXt: 1e-6, Swin: 1e-5).
      name: module name.
      dtype: compute dtype; scale and bias stay float32.
    """
    return backends.layer_norm(epsilon, name, dtype)


def gelu(x):
    """torch's default (exact, erf-based) GELU (Hendrycks & Gimpel 2016), x's shape and dtype."""
    return backends.gelu(x)


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
        x = Dense(self.hidden_features, dtype=self.dtype, name="fc1")(x)
        x = gelu(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = Dense(out_features, dtype=self.dtype, name="fc2")(x)
        return nn.Dropout(self.dropout_rate, deterministic=not train)(x)


# Swin's windowed attention (with its relative position bias) calls these two itself.
split_heads = backends.split_heads
attend = backends.attention


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
        qkv = Dense(3 * channels, use_bias=self.qkv_bias, dtype=self.dtype, name="qkv")(x)
        # No dropout module where it would be the identity: the platform may then fuse the
        # whole attention (XLA:CPU: one custom VJP from qkv to merged heads).
        dropout = None
        if train and self.attention_dropout > 0:
            dropout = nn.Dropout(self.attention_dropout, deterministic=False)
        out = backends.self_attention(qkv, self.num_heads, dropout)
        return Dense(channels, dtype=self.dtype, name="proj")(out)
