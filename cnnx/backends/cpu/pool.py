"""Max pooling with a direct gradient, fast on XLA:CPU (the CPU route of `max_pool`).

JAX differentiates a max pool by tracking each window's argmax: a variadic reduce-window over
the values and four int32 index arrays the size of the input, then a scatter, slow on XLA:CPU.
Here the gradient is routed directly: for each window tap (i, j), in row-major order, the output
gradient goes to the tap that equals the window's maximum and that no earlier tap claimed (the
first maximum, the element XLA and torch pick on ties), placed back with a strided pad and
summed over taps: the same gradients (to float rounding where windows overlap). The forward
pass is the usual `lax.reduce_window` max. Measured gain: docs/xla_cpu.md.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from cnnx.backends import portable


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, pads):
    # A Python -inf (not an array) makes this the `reduce_window_max` primitive, as in flax:
    # the analysis tools count it as a max pool.
    return lax.reduce_window(
        x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0))
    )


def _max_pool_fwd(x, window, strides, pads):
    y = _max_pool(x, window, strides, pads)
    return y, (x, y)


def _max_pool_bwd(window, strides, pads, residuals, g):
    x, y = residuals
    n, h, w, c = x.shape
    ho, wo = y.shape[1:3]
    (top, bottom), (left, right) = pads
    xp = lax.pad(
        x, jnp.array(-jnp.inf, x.dtype), [(0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)]
    )
    hp, wp = xp.shape[1:3]
    (sh, sw), zero = strides, jnp.zeros((), g.dtype)
    taken = jnp.zeros(y.shape, bool)
    dx = jnp.zeros(xp.shape, g.dtype)
    for i in range(window[0]):
        for j in range(window[1]):
            stop = (n, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, c)
            tap = lax.slice(xp, (0, i, j, 0), stop, (1, sh, sw, 1))
            first = (tap == y) & ~taken
            taken = taken | first
            # Back to the tap's input positions: stride - 1 zeros between rows / columns.
            place = [(0, 0, 0), (i, hp - stop[1], sh - 1), (j, wp - stop[2], sw - 1), (0, 0, 0)]
            dx = dx + lax.pad(jnp.where(first, g, zero), zero, place)
    return (dx[:, top : top + h, left : left + w, :],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x, window_shape, strides, padding):
    """`flax.linen.max_pool` with the direct gradient (custom VJP) on NHWC arrays.

    Args:
      x: (N, H, W, C) array (other ranks or windows: the portable `nn.max_pool`).
      window_shape: (kh, kw).
      strides: (sh, sw).
      padding: 'VALID', 'SAME' or ((top, bottom), (left, right)); padded positions never win.

    Returns:
      The pooled (N, Ho, Wo, C) array, equal to `flax.linen.max_pool`'s.
    """
    if x.ndim != 4 or len(window_shape) != 2:
        return portable.max_pool(x, window_shape, strides, padding)
    window = tuple(int(k) for k in window_shape)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(x.shape[1:3], window, strides, padding)
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _max_pool(x, window, tuple(int(s) for s in strides), pads)
