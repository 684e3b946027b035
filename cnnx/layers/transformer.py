"""Transformer building blocks shared by ViT and Swin: LayerNorm, multi-head self-attention, MLP.

Names follow timm (`qkv`, `proj`, `fc1`, `fc2`) so torchvision and timm weights map onto them
with plain renames. Activations use the exact (erf) GELU of torch's `nn.GELU()`, not Flax's
tanh approximation, so converted weights give the same logits.

On XLA:CPU (when `cnnx.backends.cpu.enabled()`, the `CNNX_CPU_GRADS` switch) LayerNorm, GELU
and self-attention take formulations with their own gradients; their values equal the plain
ones to float rounding, their parameters are the same. Why, and the measured gains
(docs/xla_cpu.md, "ViT"):

- GELU as torch writes it, `x/2 (1 + erf(x/√2))`: `jax.nn.gelu` uses `erfc`, which XLA:CPU
  expands into a branchy series 6x slower than its `erf`; the derivative
  `Φ(x) + x φ(x)` is written out, so the backward pass keeps only x.
- LayerNorm with the closed-form input gradient, `rstd (g - mean(g) - x̂ mean(g x̂))` with
  `g = dy · scale`: autodiff of the two-pass variance gives XLA several reductions and
  broadcasts over the activations, which it fuses poorly.
- Self-attention from the packed `qkv` projection to the merged heads in one custom VJP: the
  softmax gradient `w (dw - Σ dw w)` in closed form, and dq, dk, dv stacked and transposed
  back into the packed layout once, where autodiff pads three arrays and adds them, with
  transposes between each step. Only without attention dropout (whose mask the plain
  formulation draws); Swin's windowed attention with its bias keeps `attend`.

Everywhere else (GPU, TPU, `CNNX_CPU_GRADS=xla`) the plain formulation runs: `nn.LayerNorm`,
`jax.nn.gelu`, `split_heads` + `attend` under autodiff.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnx.backends import cpu

_SQRT_HALF = float(np.sqrt(0.5))
_INV_SQRT_2PI = float(1 / np.sqrt(2 * np.pi))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _layer_norm_cpu(x, scale, bias, epsilon):
    """LayerNorm over the last axis in float32 (flax's arithmetic), with its closed-form VJP."""
    return _layer_norm_cpu_fwd(x, scale, bias, epsilon)[0]


def _layer_norm_cpu_fwd(x, scale, bias, epsilon):
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, -1, keepdims=True)
    xc = xf - mean
    rstd = lax.rsqrt(jnp.mean(xc * xc, -1, keepdims=True) + epsilon)
    return xc * (rstd * scale) + bias, (x, mean, rstd, scale)


def _layer_norm_cpu_bwd(epsilon, res, dy):
    del epsilon  # rstd carries it
    x, mean, rstd, scale = res
    xhat = (x.astype(jnp.float32) - mean) * rstd
    dy = dy.astype(jnp.float32)
    lead = tuple(range(x.ndim - 1))
    g = dy * scale
    dx = rstd * (g - jnp.mean(g, -1, keepdims=True) - xhat * jnp.mean(g * xhat, -1, keepdims=True))
    return dx.astype(x.dtype), jnp.sum(dy * xhat, lead), jnp.sum(dy, lead)


_layer_norm_cpu.defvjp(_layer_norm_cpu_fwd, _layer_norm_cpu_bwd)


class LayerNormCPU(nn.Module):
    """`nn.LayerNorm(use_fast_variance=False)` with a closed-form gradient (XLA:CPU route).

    Same parameters (`scale` ones, `bias` zeros, float32, shape (C,)) and the same float32
    arithmetic as flax, so checkpoints and converted weights work on either route.

    Attributes:
      epsilon: added to the variance.
      dtype: output dtype (statistics and arithmetic in float32).
    """

    epsilon: float = 1e-6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        """Normalises x (..., C) over its last axis; returns x's shape in `dtype`."""
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        return _layer_norm_cpu(x, scale, bias, self.epsilon).astype(self.dtype)


def layer_norm(epsilon: float, name: str, dtype: Any = jnp.float32) -> nn.Module:
    """A LayerNorm over the last (channel) axis with torch's two-pass variance.

    `nn.LayerNorm`, or on the XLA:CPU route `LayerNormCPU` (same parameters and values, a
    faster gradient).

    Args:
      epsilon: added to the variance (torchvision ViT/ConvNeXt: 1e-6, Swin: 1e-5).
      name: module name.
      dtype: compute dtype; scale and bias stay float32.
    """
    # use_fast_variance=False: E[(x - mean)^2] like torch, not E[x^2] - mean^2, which loses
    # precision on large activations and breaks 1e-4 parity.
    if cpu.enabled():
        return LayerNormCPU(epsilon, dtype, name=name)
    return nn.LayerNorm(epsilon=epsilon, use_fast_variance=False, dtype=dtype, name=name)


def gelu(x):
    """torch's default (exact, erf-based) GELU (Hendrycks & Gimpel 2016), x's shape and dtype.

    `jax.nn.gelu(approximate=False)`, or on the XLA:CPU route torch's own `erf` formula with
    a written-out derivative (same values to float rounding; see the module docstring).
    """
    if cpu.enabled():
        return _gelu_cpu(x)
    return nn.gelu(x, approximate=False)


def _gelu_erf(x):
    # Python-float constants keep x's dtype (bfloat16 stays bfloat16).
    return 0.5 * x * (1 + lax.erf(x * _SQRT_HALF))


@jax.custom_vjp
def _gelu_cpu(x):
    return _gelu_erf(x)


def _gelu_cpu_fwd(x):
    return _gelu_erf(x), x


def _gelu_cpu_bwd(x, dy):
    cdf = 0.5 * (1 + lax.erf(x * _SQRT_HALF))
    return (dy * (cdf + x * (_INV_SQRT_2PI * jnp.exp(-0.5 * x * x))),)


_gelu_cpu.defvjp(_gelu_cpu_fwd, _gelu_cpu_bwd)


def _heads_first(qkv, num_heads):
    """(..., N, 3·C) -> (3, ..., heads, N, C / heads), torch's [q | k | v] packing."""
    *lead, n, c3 = qkv.shape
    nl = len(lead)
    t = qkv.reshape(*lead, n, 3, num_heads, c3 // (3 * num_heads))
    return t.transpose(nl + 1, *range(nl), nl + 2, nl, nl + 3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _self_attention_cpu(qkv, num_heads):
    """Softmax attention from packed (..., N, 3·C) projections to merged (..., N, C) heads."""
    return _self_attention_cpu_fwd(qkv, num_heads)[0]


def _self_attention_cpu_fwd(qkv, num_heads):
    q, k, v = _heads_first(qkv, num_heads)
    q = q * q.shape[-1] ** -0.5
    out, weights = _attend_scaled(q, k, v)
    return out, (q, k, v, weights)


def _self_attention_cpu_bwd(num_heads, res, dout):
    q, k, v, weights = res
    dout = dout.reshape(*dout.shape[:-1], num_heads, -1)
    dout = jnp.swapaxes(dout, -3, -2)  # (..., heads, N, head_dim)
    # q is already scaled by head_dim**-0.5; the softmax gradient in closed form.
    dv = jnp.einsum("...qk,...qd->...kd", weights, dout)
    dw = jnp.einsum("...qd,...kd->...qk", dout, v).astype(jnp.float32)
    wf = weights.astype(jnp.float32)
    dlogits = (wf * (dw - jnp.sum(dw * wf, -1, keepdims=True))).astype(q.dtype)
    dq = jnp.einsum("...qk,...kd->...qd", dlogits, k) * q.shape[-1] ** -0.5
    dk = jnp.einsum("...qk,...qd->...kd", dlogits, q)
    d = jnp.stack([dq, dk, dv])  # (3, ..., heads, N, head_dim)
    nl = d.ndim - 4
    d = d.transpose(*range(1, nl + 1), nl + 2, 0, nl + 1, nl + 3)  # (..., N, 3, heads, hd)
    return (d.reshape(*d.shape[:-3], -1),)


_self_attention_cpu.defvjp(_self_attention_cpu_fwd, _self_attention_cpu_bwd)


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
    q, k, v = _heads_first(qkv, num_heads)
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
    return _attend_scaled(q * q.shape[-1] ** -0.5, k, v, bias, dropout)[0]


def _attend_scaled(q, k, v, bias=None, dropout=None):
    """`attend` with queries already scaled; also returns the softmax weights (pre-dropout)."""
    logits = jnp.einsum("...qd,...kd->...qk", q, k)
    if bias is not None:
        logits = logits + bias
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    dropped = dropout(weights) if dropout is not None else weights
    out = jnp.einsum("...qk,...kd->...qd", dropped, v)
    out = jnp.swapaxes(out, -3, -2)  # (..., N, heads, head_dim)
    return out.reshape(*out.shape[:-2], -1), weights


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
        if cpu.enabled() and (not train or self.attention_dropout == 0):
            # XLA:CPU: one custom VJP from qkv to merged heads (module docstring).
            out = _self_attention_cpu(qkv, self.num_heads)
            return nn.Dense(channels, dtype=self.dtype, name="proj")(out)
        q, k, v = split_heads(qkv, self.num_heads)
        out = attend(q, k, v, dropout=nn.Dropout(self.attention_dropout, deterministic=not train))
        return nn.Dense(channels, dtype=self.dtype, name="proj")(out)
