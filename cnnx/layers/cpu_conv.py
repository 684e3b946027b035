"""A drop-in `conv_general_dilated` whose weight gradient is fast on XLA:CPU.

Why: XLA differentiates a convolution into two convolutions. The input gradient is an ordinary
convolution (of the output gradient with the flipped kernel) and runs about as fast as the
forward pass. The weight gradient is a convolution in which the *batch* is the contracted
axis; for it XLA:CPU first copies the layer's input into a layout with the batch innermost
(`f32[C,H,W,N]{0,2,1,3}`): a strided transpose of every activation of the network, which XLA
also fuses with the recomputation of the BatchNorm and ReLU (or the whole residual chain)
that produced it, and runs on one thread. In a ResNet-50 training step (batch 16, 224 px)
these `transpose_copy_fusion`s took a third of the step on one core and more than all the
convolutions together; a 1x1 weight gradient ran at 5-20 GFLOP/s.

Here the weight gradient is a matrix product per kernel tap (i, j):
`dW[i, j] = sum over (n, h, w) of x[n, s*h + i, s*w + j, :]^T dy[n, h, w, :]`, a `dot_general`
contracting the batch and spatial axes of two NHWC arrays. XLA then copies only the operand
with fewer channels into (channels, N*H*W) order (dy, shared by all taps, for k x k kernels)
and runs the product in its matrix-multiply library (YNNPACK): 2-10x faster per layer, and
the ResNet-50 step took 19% less CPU time (measured with scripts/benchmark.py, see README).
Depthwise kernels take a product and a reduction per tap. The layer input is kept as computed
in the forward pass (an optimisation barrier) instead of being recomputed per tap.

The forward pass and the input gradient stay XLA's own convolutions, so a forward jaxpr still
shows `conv_general_dilated` (analysis tools are unaffected) and the results equal
`lax.conv_general_dilated`'s; the weight gradient agrees to float rounding (summation order).

Used where it helps: NHWC inputs with at least 8 channels, HWIO kernels, no input dilation, on
the CPU backend (`jax.default_backend()` when traced); everywhere else (GPU/TPU, the
3-channel image, other layouts) this is exactly `lax.conv_general_dilated`.
`CNNX_CPU_GRADS=xla` in the environment turns it off, and `cnnx.layers.cpu_pool` with it
(`custom` forces both on, for tests).
"""

import functools
import os

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")
# Layers with fewer input channels (the image: 3) keep XLA's gradient: their input is small
# and has no producer to recompute, and a product with 3 columns is a poor matrix product.
_MIN_CHANNELS = 8


def _pairs(padding, x_shape, w_shape, strides, dilation):
    """Explicit ((lo, hi), (lo, hi)) padding from a lax padding spec (string or pairs)."""
    if isinstance(padding, str):
        k = [(w_shape[i] - 1) * dilation[i] + 1 for i in range(2)]
        return tuple(map(tuple, lax.padtype_to_pads(x_shape[1:3], k, strides, padding)))
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def _is_nhwc(dimension_numbers) -> bool:
    if dimension_numbers is None:
        return False
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        return tuple(dimension_numbers) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    return tuple(dimension_numbers) == _NHWC


def enabled() -> bool:
    """Whether convolutions and pools traced now take the custom CPU gradients.

    `CNNX_CPU_GRADS`: 'auto' (default: on when JAX's default backend is the CPU), 'xla' (off)
    or 'custom' (on).
    """
    setting = os.environ.get("CNNX_CPU_GRADS", "auto").lower()
    if setting in ("xla", "off", "0"):
        return False
    if setting in ("custom", "on", "1"):
        return True
    return jax.default_backend() == "cpu"


def _xla_conv(x, w, strides, padding, dilation, groups, precision):
    return lax.conv_general_dilated(
        x,
        w,
        strides,
        padding,
        rhs_dilation=dilation,
        dimension_numbers=_NHWC,
        feature_group_count=groups,
        precision=precision,
    )


def _tap(xp, i, j, out_hw, strides, dilation):
    """The input pixels that kernel tap (i, j) multiplies, one per output pixel: (N, Ho, Wo, C)."""
    n, _, _, c = xp.shape
    (ho, wo), (sh, sw), (dh, dw) = out_hw, strides, dilation
    start = (0, i * dh, j * dw, 0)
    stop = (n, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1, c)
    return lax.slice(xp, start, stop, (1, sh, sw, 1))


def weight_grad(x, dy, w_shape, strides, padding, dilation=(1, 1), groups=1):
    """The gradient of a NHWC/HWIO convolution with respect to its kernel.

    Args:
      x: the convolution's input (N, H, W, Cin).
      dy: the gradient of its output (N, Ho, Wo, Cout).
      w_shape: the kernel's shape (kh, kw, Cin / groups, Cout).
      strides, padding, dilation: the convolution's window settings (padding as pairs).
      groups: 1 (dense) or Cin (depthwise, one input channel per group).

    Returns:
      dW of shape `w_shape`, in dy's dtype (products accumulated in float32).
    """
    kh, kw, _, cout = w_shape
    cin = x.shape[-1]
    zero = jnp.zeros((), x.dtype)
    xp = lax.pad(x, zero, [(0, 0, 0), (*padding[0], 0), (*padding[1], 0), (0, 0, 0)])
    taps = [_tap(xp, i, j, dy.shape[1:3], strides, dilation) for i in range(kh) for j in range(kw)]
    if groups != 1:  # depthwise: output channel c sees only input channel c
        dy32 = dy.astype(jnp.float32)
        g = jnp.stack([jnp.sum(t.astype(jnp.float32) * dy32, axis=(0, 1, 2)) for t in taps])
        return g.reshape(w_shape).astype(dy.dtype)
    if len(taps) == 1 and cin <= cout:
        # XLA:CPU copies the left operand of a product into (channels, N*H*W) order; the
        # smaller of the two is the cheaper copy.
        return _contract(taps[0], dy).reshape(w_shape).astype(dy.dtype)
    # dy on the left: one copy of it serves every tap. The (Cout, Cin) results are
    # transposed behind a barrier; otherwise XLA folds the transpose into the products,
    # which then leave its fast matrix-multiply library.
    g = lax.optimization_barrier(jnp.stack([_contract(dy, t) for t in taps]))
    return jnp.swapaxes(g, 1, 2).reshape(w_shape).astype(dy.dtype)


def _contract(a, b):
    """sum over (n, h, w) of a[n, h, w, :]^T b[n, h, w, :]: (Ca, Cb), float32 result."""
    dims = (((0, 1, 2), (0, 1, 2)), ((), ()))
    return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv(x, w, strides, padding, dilation, groups, precision):
    return _xla_conv(x, w, strides, padding, dilation, groups, precision)


def _conv_fwd(x, w, strides, padding, dilation, groups, precision):
    y = _xla_conv(x, w, strides, padding, dilation, groups, precision)
    # Keep x as computed here: without the barrier XLA recomputes it (a BatchNorm and ReLU,
    # or a chain of them along the residual stream) inside every consumer in the backward
    # pass, once per kernel tap.
    return y, (lax.optimization_barrier(x), w)


def _conv_bwd(strides, padding, dilation, groups, precision, residuals, dy):
    x, w = residuals
    # The input gradient: XLA's own transposed convolution.
    conv = functools.partial(
        _xla_conv,
        strides=strides,
        padding=padding,
        dilation=dilation,
        groups=groups,
        precision=precision,
    )
    _, input_vjp = jax.vjp(lambda x: conv(x, w), x)
    (dx,) = input_vjp(dy)
    dw = weight_grad(x, dy, w.shape, strides, padding, dilation, groups)
    return dx, dw.astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
):
    """`lax.conv_general_dilated` with a matrix-product weight gradient on XLA:CPU.

    Same signature and forward result as `lax.conv_general_dilated` (see the module docstring
    for when the custom gradient applies). Pass it to `nn.Conv(conv_general_dilated=...)`.
    """
    dilation = tuple(rhs_dilation or (1, 1))
    cin = lhs.shape[-1] if lhs.ndim == 4 else None
    applies = (
        lhs.ndim == 4
        and _is_nhwc(dimension_numbers)
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and batch_group_count == 1
        and preferred_element_type is None
        and (feature_group_count == 1 or (feature_group_count == cin and rhs.shape[2] == 1))
        and cin >= _MIN_CHANNELS
        and enabled()
    )
    if not applies:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            batch_group_count=batch_group_count,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )
    strides = tuple(int(s) for s in window_strides)
    pads = _pairs(padding, lhs.shape, rhs.shape, strides, dilation)
    return _conv(lhs, rhs, strides, pads, dilation, int(feature_group_count), precision)
