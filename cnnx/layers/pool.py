"""Pooling for NHWC arrays: flax-style and torch-style max pooling, adaptive average pooling.

- `max_pool(x, window_shape, strides, padding)`: `flax.linen.max_pool`'s signature, on the
  platform's route (`cnnx.backends.max_pool`: on the CPU a direct, faster gradient).
- `torch_max_pool(x, kernel_size, strides, padding, ceil_mode=...)`: torch's `MaxPool2d`,
  including `ceil_mode` (torchvision's GoogLeNet); built on `max_pool`.
- `adaptive_avg_pool(x, output_size)`: torch's `AdaptiveAvgPool2d` (AlexNet, VGG, GoogLeNet's
  auxiliary heads), whose windows are not a fixed stride.

The torch-style functions reproduce torch exactly so converted weights give the same logits.
"""

import math

import flax.linen as nn
import jax.numpy as jnp

from cnnx import backends


def max_pool(x, window_shape, strides=None, padding="VALID"):
    """`flax.linen.max_pool` on the platform's route (on XLA:CPU a faster gradient).

    Args:
      x: (N, H, W, C) array.
      window_shape: (kh, kw).
      strides: (sh, sw); default (1, 1).
      padding: 'VALID', 'SAME' or ((top, bottom), (left, right)); padded positions never win.

    Returns:
      The pooled array; the same values and gradients as `flax.linen.max_pool`.
    """
    strides = tuple(strides or (1,) * len(window_shape))
    return backends.max_pool(x, window_shape, strides, padding)


def torch_max_pool(x, kernel_size: int, strides: int, padding: int = 0, *, ceil_mode: bool = False):
    """`torch.nn.MaxPool2d(kernel_size, strides, padding, ceil_mode)` on an NHWC array.

    With `ceil_mode` the output keeps a last, partial window, provided it starts inside the
    input or the left padding (torch's rule); padded positions never win the max.
    """
    pads = []
    for size in x.shape[1:3]:
        span = size + 2 * padding - kernel_size
        out = (math.ceil(span / strides) if ceil_mode else span // strides) + 1
        if ceil_mode and (out - 1) * strides >= size + padding:
            out -= 1
        if out < 1:
            raise ValueError(
                f"torch_max_pool: a {size}-pixel input is too small for a {kernel_size}-pixel "
                f"window (padding {padding}); use a larger input resolution"
            )
        extra = max(0, (out - 1) * strides + kernel_size - (size + 2 * padding))
        pads.append((padding, padding + extra))
    return max_pool(x, (kernel_size, kernel_size), (strides, strides), pads)


def adaptive_avg_pool(x, output_size: int | tuple[int, int]):
    """`torch.nn.AdaptiveAvgPool2d(output_size)` on an NHWC array.

    Window i of n over a length L spans [floor(i L / n), ceil((i + 1) L / n)); windows may
    overlap, and an input smaller than the output is replicated (as in torch).
    """
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    h, w = x.shape[1:3]
    if (h, w) == (oh, ow):
        return x
    if (h, w) == (1, 1):
        return jnp.broadcast_to(x, (x.shape[0], oh, ow, x.shape[3]))
    if h % oh == 0 and w % ow == 0:
        return nn.avg_pool(x, (h // oh, w // ow), strides=(h // oh, w // ow))

    def bounds(i, n, length):
        return (i * length) // n, -((-(i + 1) * length) // n)

    rows = []
    for i in range(oh):
        r0, r1 = bounds(i, oh, h)
        cols = []
        for j in range(ow):
            c0, c1 = bounds(j, ow, w)
            cols.append(jnp.mean(x[:, r0:r1, c0:c1, :], axis=(1, 2)))
        rows.append(jnp.stack(cols, axis=1))
    return jnp.stack(rows, axis=1)
