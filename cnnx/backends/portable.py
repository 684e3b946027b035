"""The portable formulations: plain `lax` and `flax.linen`, what every platform falls back to.

They define the values every route must give (to float rounding) and the parameters it must
keep, and they are what runs wherever no platform module registered a route (`routes`):
`lax.conv_general_dilated`, `lax.dot_general`, `flax.linen.max_pool`, `nn.LayerNorm` with
torch's two-pass variance, the exact (erf) GELU of torch's `nn.GELU()` and softmax attention
under autodiff.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from cnnx.backends.routes import Routes


def max_pool(x, window_shape, strides, padding):
    """`flax.linen.max_pool(x, window_shape, strides, padding)`; window and strides tuples."""
    return nn.max_pool(x, tuple(window_shape), strides=strides, padding=padding)


def layer_norm(epsilon: float, name: str, dtype=jnp.float32) -> nn.Module:
    """`nn.LayerNorm` over the last axis with torch's two-pass variance.

    use_fast_variance=False: E[(x - mean)^2] like torch, not E[x^2] - mean^2, which loses
    precision on large activations and breaks 1e-4 parity.
    """
    return nn.LayerNorm(epsilon=epsilon, use_fast_variance=False, dtype=dtype, name=name)


def gelu(x):
    """torch's default (exact, erf-based) GELU: `jax.nn.gelu(approximate=False)`."""
    return nn.gelu(x, approximate=False)


def heads_first(qkv, num_heads: int):
    """(..., N, 3·C) -> (3, ..., heads, N, C / heads), torch's [q | k | v] packing."""
    *lead, n, c3 = qkv.shape
    nl = len(lead)
    t = qkv.reshape(*lead, n, 3, num_heads, c3 // (3 * num_heads))
    return t.transpose(nl + 1, *range(nl), nl + 2, nl, nl + 3)


def attend_scaled(q, k, v, bias=None, dropout=None):
    """Attention with queries already scaled: (merged heads, the softmax weights pre-dropout).

    Args:
      q, k, v: (..., heads, N, head_dim); q already multiplied by head_dim ** -0.5.
      bias: added to the logits before the softmax (relative position bias, masks).
      dropout: applied to the attention weights (a callable), or None.

    Returns:
      ((..., N, heads · head_dim) with heads concatenated in order, (..., heads, N, N)).
    """
    logits = jnp.einsum("...qd,...kd->...qk", q, k)
    if bias is not None:
        logits = logits + bias
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    dropped = dropout(weights) if dropout is not None else weights
    out = jnp.einsum("...qk,...kd->...qd", dropped, v)
    out = jnp.swapaxes(out, -3, -2)  # (..., N, heads, head_dim)
    return out.reshape(*out.shape[:-2], -1), weights


def attention(q, k, v, bias=None, dropout=None):
    """Scaled dot-product attention over (..., heads, N, head_dim): (..., N, heads·head_dim)."""
    return attend_scaled(q * q.shape[-1] ** -0.5, k, v, bias, dropout)[0]


def self_attention(qkv, num_heads: int, dropout=None):
    """Softmax attention from packed (..., N, 3·C) projections to merged (..., N, C) heads."""
    q, k, v = heads_first(qkv, num_heads)
    return attention(q, k, v, dropout=dropout)


def describe() -> str:
    """The portable routes' log line: XLA's convolutions on JAX's default backend."""
    return f"XLA ({jax.default_backend()})"


ROUTES = Routes(
    name="portable",
    conv_general_dilated=lax.conv_general_dilated,
    dot_general=lax.dot_general,
    max_pool=max_pool,
    layer_norm=layer_norm,
    gelu=gelu,
    attention=attention,
    self_attention=self_attention,
    describe=describe,
    conv_kernels=dict,
)
