"""Transformer layers with their own gradients on XLA:CPU: LayerNorm, GELU, self-attention.

Their values equal the portable formulations' (`cnnx.backends.portable`) to float rounding and
their parameters are the same. Why, and the measured gains (docs/xla_cpu.md, "ViT"):

- GELU as torch writes it, `x/2 (1 + erf(x/√2))`: `jax.nn.gelu` uses `erfc`, which XLA:CPU
  expands into a branchy series 6x slower than its `erf`; the derivative
  `Φ(x) + x φ(x)` is written out, so the backward pass keeps only x.
- LayerNorm with the closed-form input gradient, `rstd (g - mean(g) - x̂ mean(g x̂))` with
  `g = dy · scale`: autodiff of the two-pass variance gives XLA several reductions and
  broadcasts over the activations, which it fuses poorly.
- Self-attention from the packed `qkv` projection to the merged heads in one custom VJP: the
  softmax gradient `w (dw - Σ dw w)` in closed form, and dq, dk, dv stacked and transposed
  back into the packed layout once, where autodiff pads three arrays and adds them, with
  transposes between each step. Only without attention dropout (whose mask the portable
  formulation draws); Swin's windowed attention with its bias keeps the portable `attention`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnx.backends import portable

_SQRT_HALF = float(np.sqrt(0.5))
_INV_SQRT_2PI = float(1 / np.sqrt(2 * np.pi))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _layer_norm(x, scale, bias, epsilon):
    """LayerNorm over the last axis in float32 (flax's arithmetic), with its closed-form VJP."""
    return _layer_norm_fwd(x, scale, bias, epsilon)[0]


def _layer_norm_fwd(x, scale, bias, epsilon):
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, -1, keepdims=True)
    xc = xf - mean
    rstd = lax.rsqrt(jnp.mean(xc * xc, -1, keepdims=True) + epsilon)
    return xc * (rstd * scale) + bias, (x, mean, rstd, scale)


def _layer_norm_bwd(epsilon, res, dy):
    del epsilon  # rstd carries it
    x, mean, rstd, scale = res
    xhat = (x.astype(jnp.float32) - mean) * rstd
    dy = dy.astype(jnp.float32)
    lead = tuple(range(x.ndim - 1))
    g = dy * scale
    dx = rstd * (g - jnp.mean(g, -1, keepdims=True) - xhat * jnp.mean(g * xhat, -1, keepdims=True))
    return dx.astype(x.dtype), jnp.sum(dy * xhat, lead), jnp.sum(dy, lead)


_layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


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
        return _layer_norm(x, scale, bias, self.epsilon).astype(self.dtype)


def layer_norm(epsilon: float, name: str, dtype: Any = jnp.float32) -> nn.Module:
    """The route's LayerNorm: `LayerNormCPU` (the portable one's parameters and values)."""
    return LayerNormCPU(epsilon, dtype, name=name)


def _gelu_erf(x):
    # Python-float constants keep x's dtype (bfloat16 stays bfloat16).
    return 0.5 * x * (1 + lax.erf(x * _SQRT_HALF))


@jax.custom_vjp
def gelu(x):
    """torch's exact GELU by its own `erf` formula, with a written-out derivative."""
    return _gelu_erf(x)


def _gelu_fwd(x):
    return _gelu_erf(x), x


def _gelu_bwd(x, dy):
    cdf = 0.5 * (1 + lax.erf(x * _SQRT_HALF))
    return (dy * (cdf + x * (_INV_SQRT_2PI * jnp.exp(-0.5 * x * x))),)


gelu.defvjp(_gelu_fwd, _gelu_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _fused_self_attention(qkv, num_heads):
    """Softmax attention from packed (..., N, 3·C) projections to merged (..., N, C) heads."""
    return _fused_self_attention_fwd(qkv, num_heads)[0]


def _fused_self_attention_fwd(qkv, num_heads):
    q, k, v = portable.heads_first(qkv, num_heads)
    q = q * q.shape[-1] ** -0.5
    out, weights = portable.attend_scaled(q, k, v)
    return out, (q, k, v, weights)


def _fused_self_attention_bwd(num_heads, res, dout):
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


_fused_self_attention.defvjp(_fused_self_attention_fwd, _fused_self_attention_bwd)


def self_attention(qkv, num_heads: int, dropout=None):
    """One custom VJP from packed qkv to merged heads; with dropout, the portable route."""
    if dropout is not None:
        return portable.self_attention(qkv, num_heads, dropout)
    return _fused_self_attention(qkv, num_heads)
