"""A drop-in `conv_general_dilated` that is fast on the CPU: oneDNN, or XLA with fixes.

When the oneDNN extension is built (`cnnx.backends.cpu.onednn`, switch `CNNX_ONEDNN`), every
NHWC/HWIO convolution it takes (dense, grouped, depthwise; forward and both gradients) goes
there. Otherwise, or where it does not apply, the fixes below for XLA:CPU's own gradients.

Why: XLA:CPU computes a convolution's weight gradient after copying the layer input into a
batch-innermost layout (a strided one-thread transpose, fused with the recomputation of the
BatchNorm and ReLU that produced it); for a 1x1 convolution that copy costs more than the
arithmetic. A 1x1 convolution is a matrix product, and so is its weight gradient:
`dW = sum over (n, h, w) of x[n, s*h, s*w, :]^T dy[n, h, w, :]`, one `dot_general` that XLA
runs in its matrix-multiply library. Larger dense kernels keep XLA's gradient (per-tap products
were slower). Measured gains: docs/xla_cpu.md.

The forward pass and the input gradient are XLA's own convolutions, so a forward jaxpr still
shows `conv_general_dilated` and results equal `lax.conv_general_dilated`'s; the weight
gradient agrees to float rounding. It applies to NHWC inputs with at least 8 channels, HWIO
1x1 kernels with no padding or dilation, dense (groups = 1), when `cnnx.backends.cpu.enabled()`.

Depthwise convolutions (`feature_group_count` = input channels, NHWC, any kernel, stride,
dilation, padding or channel multiplier; on 'auto' only inputs of at least 2**15 elements) go
to `cnnx.backends.cpu.depthwise` on the same switch. Their jaxpr has no `conv_general_dilated`,
so tools that read convolutions from a jaxpr trace inside `cnnx.backends.lax_only()`.

Everywhere else this is exactly `lax.conv_general_dilated`.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from cnnx.backends import switches
from cnnx.backends.cpu import depthwise, enabled, forced, onednn

_NHWC = ("NHWC", "HWIO", "NHWC")
# Layers with fewer input channels (the image: 3) keep XLA's gradient: a product with 3
# columns is a poor matrix product, and the image has no producer to recompute.
_MIN_CHANNELS = 8
# Depthwise layers with smaller inputs (tests' 32-pixel images) keep XLA's convolution on
# 'auto': there it costs little, and the shifted formulation (k*k slices, a loop in the weight
# gradient) compiles about 10x slower there. 'custom' takes every size. A 224-pixel batch of
# one has >= 47k elements.
_MIN_DEPTHWISE_ELEMENTS = 2**15


def _is_nhwc(dimension_numbers) -> bool:
    if dimension_numbers is None:
        return False
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        return tuple(dimension_numbers) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    return tuple(dimension_numbers) == _NHWC


def _is_depthwise(
    lhs,
    rhs,
    dimension_numbers,
    lhs_dilation,
    feature_group_count,
    batch_group_count,
    preferred_element_type,
) -> bool:
    """Whether cnnx.backends.cpu.depthwise computes this convolution (on the switch)."""
    return (
        lhs.ndim == 4
        and _is_nhwc(dimension_numbers)
        and feature_group_count > 1
        and feature_group_count == lhs.shape[-1]
        and rhs.shape[2] == 1
        and all(d == 1 for d in (lhs_dilation or ()))
        and batch_group_count == 1
        and preferred_element_type is None
        and not switches.lax_only_active()
        and enabled()
        and (forced() or _input_elements(lhs, rhs) >= _MIN_DEPTHWISE_ELEMENTS)
    )


def _input_elements(lhs, rhs) -> int:
    """Elements of a depthwise layer's input (channel multiplier included)."""
    n, h, w, c = lhs.shape
    return n * h * w * c * max(rhs.shape[3] // max(c, 1), 1)


def _no_padding(padding) -> bool:
    if isinstance(padding, str):
        return padding.upper() in ("VALID", "SAME")  # the same thing for a 1x1 kernel
    return all(lo == 0 and hi == 0 for lo, hi in padding)


def _contract(a, b):
    """sum over (n, h, w) of a[n, h, w, :]^T b[n, h, w, :]: (Ca, Cb), float32 result."""
    dims = (((0, 1, 2), (0, 1, 2)), ((), ()))
    return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


def weight_grad_1x1(x, dy, strides=(1, 1)):
    """The kernel gradient (1, 1, Cin, Cout) of an unpadded 1x1 NHWC convolution.

    Args:
      x: the convolution's input (N, H, W, Cin).
      dy: the gradient of its output (N, Ho, Wo, Cout).
      strides: the convolution's strides.

    Returns:
      dW in dy's dtype (the product accumulated in float32).
    """
    sh, sw = strides
    if (sh, sw) != (1, 1):
        x = x[:, ::sh, ::sw, :][:, : dy.shape[1], : dy.shape[2], :]
    cin, cout = x.shape[-1], dy.shape[-1]
    if cin <= cout:
        g = _contract(x, dy)
    else:
        # dy, the smaller array, on the left; the small (Cout, Cin) result is transposed
        # behind a barrier, otherwise XLA folds the transpose into the product, which then
        # leaves its matrix-multiply library (and runs 3-5x slower).
        g = lax.optimization_barrier(_contract(dy, x)).T
    return g.reshape(1, 1, cin, cout).astype(dy.dtype)


def _xla_conv(x, w, strides, precision):
    return lax.conv_general_dilated(
        x, w, strides, "VALID", dimension_numbers=_NHWC, precision=precision
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_1x1(x, w, strides, precision):
    return _xla_conv(x, w, strides, precision)


def _conv_1x1_fwd(x, w, strides, precision):
    return _xla_conv(x, w, strides, precision), (x, w)


def _conv_1x1_bwd(strides, precision, residuals, dy):
    x, w = residuals
    _, input_vjp = jax.vjp(lambda x: _xla_conv(x, w, strides, precision), x)
    (dx,) = input_vjp(dy)  # XLA's own transposed convolution
    return dx, weight_grad_1x1(x, dy, strides).astype(w.dtype)


_conv_1x1.defvjp(_conv_1x1_fwd, _conv_1x1_bwd)


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
    """`lax.conv_general_dilated`, with a matrix-product 1x1 weight gradient on XLA:CPU.

    Same signature and forward result as `lax.conv_general_dilated` (see the module docstring
    for when the custom gradient applies). Pass it to `nn.Conv(conv_general_dilated=...)`.

    Raises:
      cnnx.backends.cpu.onednn.OneDNNUnavailable: `CNNX_ONEDNN=on` without the extension.
    """
    if (
        _is_nhwc(dimension_numbers)
        and batch_group_count == 1
        and not switches.lax_only_active()
        and onednn.takes(lhs, rhs, padding, lhs_dilation, preferred_element_type)
        and onednn.wanted()
        and onednn.fast(lhs, rhs, window_strides, padding, rhs_dilation, feature_group_count)
    ):
        return onednn.conv(lhs, rhs, window_strides, padding, rhs_dilation, feature_group_count)
    if _is_depthwise(
        lhs,
        rhs,
        dimension_numbers,
        lhs_dilation,
        feature_group_count,
        batch_group_count,
        preferred_element_type,
    ):
        return depthwise.depthwise_conv(lhs, rhs, window_strides, padding, rhs_dilation or (1, 1))
    applies = (
        lhs.ndim == 4
        and rhs.shape[:2] == (1, 1)
        and _is_nhwc(dimension_numbers)
        and _no_padding(padding)
        and all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
        and feature_group_count == 1
        and batch_group_count == 1
        and preferred_element_type is None
        and lhs.shape[-1] >= _MIN_CHANNELS
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
    return _conv_1x1(lhs, rhs, tuple(int(s) for s in window_strides), precision)


def _depthwise_kernel(x, w, strides, padding, groups):
    del groups  # depthwise: the input's channels
    return depthwise.depthwise_conv(x, w, strides, padding)


def _onednn_kernel(x, w, strides, padding, groups):
    return onednn.conv(x, w, strides, padding, (1, 1), groups)


def kernels() -> dict:
    """The CPU's own convolutions by name, for benchmarks (`cnnx.backends.conv_kernels`).

    'cnnx': `depthwise` (depthwise layers only); 'onednn': oneDNN's (when the extension is
    built).
    """
    from cnnx.backends.routes import ConvKernel

    found = {"cnnx": ConvKernel(_depthwise_kernel, depthwise_only=True)}
    if onednn.available():
        found["onednn"] = ConvKernel(_onednn_kernel)
    return found
