"""Depthwise convolution as shifted multiply-adds, with its own gradients: fast on XLA:CPU.

Why: XLA:CPU runs a depthwise convolution (`feature_group_count` = input channels) through a
generic grouped-convolution loop, much slower than torch's oneDNN kernel, and its gradients are
as slow (figures: docs/xla_cpu.md). Here:

* forward: `y = sum over taps (i, j) of x_pad[strided window shifted by (i, j)] * w[i, j]`,
  k*k slices and multiply-adds that XLA fuses into one elementwise loop over the output;
* input gradient: for stride 1, the same op on the output gradient with the kernel flipped;
  for larger strides, each tap's `dy * w[i, j]` placed back with a strided pad and summed
  (no multiplications by the zeros a stride-dilated `dy` would hold);
* weight gradient: `dw[i, j, c] = sum over (n, h, w) of x_pad[n, s*h + i, s*w + j, c] *
  dy[n, h, w, c]`. As one reduction per tap XLA:CPU runs it on one thread, reading both
  arrays k*k times; here a loop over blocks of a few output rows adds every tap's products of
  the block into a (k*k, Wo, C) accumulator (an elementwise fusion that stays in cache),
  reduced over Wo at the end.

Low-precision inputs are accumulated in float32. Results equal `lax.conv_general_dilated`'s to
float rounding (summation order). A channel multiplier (`C * m` output channels) repeats the
input channels first; the repeat's gradient sums the copies back. `cnnx.backends.cpu.conv`
routes depthwise convolutions here when the `CNNX_CPU_GRADS` switch is on.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

Pads = tuple[tuple[int, int], tuple[int, int]]
Pair = tuple[int, int]

# Output rows per weight-gradient block: more rows per loop step amortise its overhead, fewer
# keep the (k*k, Wo, C) accumulator and the block's rows in cache (measured on 4 MobileNet /
# EfficientNet / ConvNeXt shapes: 4 was best or near it on each).
_ROWS_PER_BLOCK = 4


def _accumulation_dtype(dtype):
    return jnp.float32 if jnp.dtype(dtype).itemsize < 4 else dtype


def _span(kernel: int, dilation: int) -> int:
    return (kernel - 1) * dilation + 1


def _out_size(size: int, kernel: int, stride: int, dilation: int, pads: Pair) -> int:
    return (size + pads[0] + pads[1] - _span(kernel, dilation)) // stride + 1


def _pad(x, pads: Pads, interior: Pair = (0, 0)):
    (t, b), (lft, r) = pads
    config = [(0, 0, 0), (t, b, interior[0]), (lft, r, interior[1]), (0, 0, 0)]
    return lax.pad(x, jnp.zeros((), x.dtype), config)


def _tap(xp, i: int, j: int, out_hw: Pair, strides: Pair, dilation: Pair, rows_from: int = 0):
    """The (N, Ho, Wo, C) window of padded input `xp` that kernel tap (i, j) multiplies."""
    (ho, wo), (sh, sw), (dh, dw) = out_hw, strides, dilation
    start = (0, rows_from + i * dh, j * dw, 0)
    stop = (xp.shape[0], start[1] + (ho - 1) * sh + 1, start[2] + (wo - 1) * sw + 1, xp.shape[3])
    return lax.slice(xp, start, stop, (1, sh, sw, 1))


def _forward(x, w, strides: Pair, pads: Pads, dilation: Pair):
    """Depthwise convolution of x (N, H, W, C) with w (kh, kw, C): (N, Ho, Wo, C)."""
    kh, kw = w.shape[:2]
    out_hw = tuple(
        _out_size(x.shape[1 + a], w.shape[a], strides[a], dilation[a], pads[a]) for a in (0, 1)
    )
    acc_dtype = _accumulation_dtype(x.dtype)
    xp, wa = _pad(x, pads).astype(acc_dtype), w.astype(acc_dtype)
    y = None
    for i in range(kh):
        for j in range(kw):
            term = _tap(xp, i, j, out_hw, strides, dilation) * wa[i, j]
            y = term if y is None else y + term
    return y.astype(x.dtype)


def _input_grad(dy, w, x_shape, strides: Pair, pads: Pads, dilation: Pair):
    """dL/dx (x_shape) of `_forward` given dL/dy (N, Ho, Wo, C)."""
    kh, kw = w.shape[:2]
    (h, wd), (ho, wo) = x_shape[1:3], dy.shape[1:3]
    if strides == (1, 1):
        # A correlation with the flipped kernel over dy padded so that every input position
        # sees each tap that read it (pads may be negative: lax.pad crops then).
        full = []
        for size, out, k, d, (lo, _) in zip((h, wd), (ho, wo), (kh, kw), dilation, pads):
            before = _span(k, d) - 1 - lo
            full.append((before, size + _span(k, d) - 1 - before - out))
        return _forward(_pad(dy, tuple(full)), w[::-1, ::-1], (1, 1), ((0, 0), (0, 0)), dilation)
    # Strided: each tap's contribution back at the input positions it read (stride - 1 zeros
    # between them), summed; then the padding is cut off.
    acc_dtype = _accumulation_dtype(dy.dtype)
    g, wa = dy.astype(acc_dtype), w.astype(acc_dtype)
    hp, wp = h + sum(pads[0]), wd + sum(pads[1])
    (sh, sw), (dh, dw) = strides, dilation
    dx = None
    for i in range(kh):
        for j in range(kw):
            rows_end, cols_end = i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1
            place = ((i * dh, hp - rows_end), (j * dw, wp - cols_end))
            term = _pad(g * wa[i, j], place, (sh - 1, sw - 1))
            dx = term if dx is None else dx + term
    (t, _), (lft, _) = pads
    # Negative padding (cropping) is undone by padding the gradient back with zeros.
    dx = _pad(dx, ((max(-t, 0), 0), (max(-lft, 0), 0)))
    top, left = max(t, 0), max(lft, 0)
    dx = dx[:, top : top + h, left : left + wd, :]
    return _pad(dx, ((0, h - dx.shape[1]), (0, wd - dx.shape[2]))).astype(dy.dtype)


def _weight_grad(x, dy, kernel: Pair, strides: Pair, pads: Pads, dilation: Pair):
    """dL/dw (kh, kw, C) of `_forward` given its input x and dL/dy (N, Ho, Wo, C)."""
    (kh, kw), (sh, _), (dh, _) = kernel, strides, dilation
    n, ho, wo, c = dy.shape
    acc_dtype = _accumulation_dtype(dy.dtype)
    xp, g = _pad(x, pads).astype(acc_dtype), dy.astype(acc_dtype)
    rows = max(r for r in range(1, _ROWS_PER_BLOCK + 1) if ho % r == 0)
    blocks = ho // rows
    span = (rows - 1) * sh + _span(kh, dh)

    def add_block(b, acc):
        image, block = b // blocks, b % blocks
        x_rows = lax.dynamic_slice(xp, (image, block * rows * sh, 0, 0), (1, span, *xp.shape[2:]))
        g_rows = lax.dynamic_slice(g, (image, block * rows, 0, 0), (1, rows, wo, c))
        taps = [
            jnp.sum(_tap(x_rows, i, j, (rows, wo), strides, dilation) * g_rows, axis=(0, 1))
            for i in range(kh)
            for j in range(kw)
        ]
        return acc + jnp.stack(taps)

    acc = lax.fori_loop(0, n * blocks, add_block, jnp.zeros((kh * kw, wo, c), acc_dtype))
    return acc.sum(axis=1).reshape(kh, kw, c).astype(dy.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise(x, w, strides, pads, dilation):
    return _forward(x, w, strides, pads, dilation)


def _depthwise_fwd(x, w, strides, pads, dilation):
    return _forward(x, w, strides, pads, dilation), (x, w)


def _depthwise_bwd(strides, pads, dilation, residuals, dy):
    x, w = residuals
    dx = _input_grad(dy, w, x.shape, strides, pads, dilation)
    dw = _weight_grad(x, dy, w.shape[:2], strides, pads, dilation)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


def resolve_padding(padding, in_hw, kernel: Pair, strides: Pair, dilation: Pair) -> Pads:
    """Explicit ((top, bottom), (left, right)) padding from 'SAME', 'VALID' or pairs."""
    if isinstance(padding, str):
        window = tuple(_span(k, d) for k, d in zip(kernel, dilation))
        pads = lax.padtype_to_pads(tuple(in_hw), window, strides, padding)
    else:
        pads = padding
    return tuple((int(lo), int(hi)) for lo, hi in pads)


def depthwise_conv(x, w, strides=(1, 1), padding="VALID", dilation=(1, 1)):
    """A depthwise NHWC convolution: `lax.conv_general_dilated(..., feature_group_count=C)`.

    Args:
      x: input (N, H, W, C).
      w: HWIO kernel (kh, kw, 1, C * m); output channel o reads input channel o // m.
      strides: (sh, sw).
      padding: 'SAME', 'VALID' or ((top, bottom), (left, right)).
      dilation: kernel dilation (dh, dw).

    Returns:
      (N, Ho, Wo, C * m) in x's dtype, differentiable in x and w (custom gradients).

    Raises:
      ValueError: if w's output channels are not a multiple of x's channels.
    """
    c = x.shape[-1]
    if w.ndim != 4 or w.shape[2] != 1 or w.shape[3] % c:
        raise ValueError(f"depthwise kernel must be (kh, kw, 1, {c} * m); got {w.shape}")
    strides, dilation = tuple(int(s) for s in strides), tuple(int(d) for d in dilation)
    pads = resolve_padding(padding, x.shape[1:3], w.shape[:2], strides, dilation)
    multiplier = w.shape[3] // c
    if multiplier > 1:
        x = jnp.repeat(x, multiplier, axis=-1)
    return _depthwise(x, w[:, :, 0, :], strides, pads, dilation)
