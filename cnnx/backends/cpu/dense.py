"""Dense layers' matrix products on the CPU through oneDNN's matmul primitive.

On some hosts torch's GEMMs outrun XLA:CPU's dot by far (issue 32: a ViT-B/16 train step at
110 GFLOP/s in cnnx against about 181 in torch, on a host whose XLA matmul ceiling was 201).
`dot_general` here is a drop-in for `lax.dot_general` as `nn.Dense` calls it (the input's
last axis contracted with a 2-D kernel's first, no batch axes): it flattens the leading axes
into rows and runs the product, its input gradient `dy @ W^T` and its kernel gradient
`x^T @ dy` through one oneDNN handler (`cnnx_onednn_matmul` in `onednn_matmul.cc`, built into
the same library as the convolutions), tied together by a `jax.custom_vjp`. Transposed
operands are read in place, so nothing is copied around the calls.

It runs on the convolutions' switch (`CNNX_ONEDNN`, `onednn.wanted()`: a one-device CPU
process with the extension built, on 'auto'), for float32 or bfloat16 products of at least
`MIN_MACS` multiply-adds that oneDNN runs with its own kernels (`fast`); elsewhere, and inside
`cnnx.backends.lax_only()` (the analysis tools count `dot_general` equations), it is exactly
`lax.dot_general`. Values and both gradients agree with `lax.dot_general` to float rounding
(tests/backends/test_onednn_dense.py). Measured: docs/xla_cpu.md, "Dense layers".
"""

import jax
import numpy as np
from jax import lax

from cnnx.backends import switches
from cnnx.backends.cpu import onednn

# Smaller products (a few thousand multiply-adds) cost less than the call into the library.
MIN_MACS = 2**18
# oneDNN's own kernels (brgemm-based, or its JIT GEMM); not its reference implementation.
_FAST_IMPLEMENTATIONS = ("brg", "gemm:jit", "jit")


def takes(lhs, rhs, dimension_numbers, preferred_element_type) -> bool:
    """Whether `matmul` computes this `dot_general` (nn.Dense's form; shapes and dtypes only)."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    return (
        rhs.ndim == 2
        and lhs.ndim >= 1
        and tuple(lhs_contract) == (lhs.ndim - 1,)
        and tuple(rhs_contract) == (0,)
        and not tuple(lhs_batch)
        and not tuple(rhs_batch)
        and lhs.dtype == rhs.dtype
        and str(lhs.dtype) in ("float32", "bfloat16")
        and preferred_element_type in (None, lhs.dtype)
        and lhs.size > 0
        and rhs.size > 0
    )


def fast(m: int, k: int, n: int, dtype: str = "float32") -> bool:
    """Whether an (m x k) @ (k x n) product is big enough and oneDNN has its own kernel for it
    and for both gradients. Raises OneDNNUnavailable when the extension is not built."""
    if m * k * n < MIN_MACS:
        return False
    passes = ((m, k, n, False, False), (m, n, k, False, True), (k, m, n, True, False))
    return all(
        onednn.matmul_implementation(*p, dtype).startswith(_FAST_IMPLEMENTATIONS) for p in passes
    )


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kwargs):
    """`lax.dot_general`, through oneDNN for `nn.Dense`'s products (module docstring).

    Same signature and values (to float rounding) as `lax.dot_general`; pass it as
    `nn.Dense(dot_general=...)`. `precision` does not change a float32 product on the CPU.

    Raises:
      cnnx.backends.cpu.onednn.OneDNNUnavailable: `CNNX_ONEDNN=on` without the extension.
    """
    if (
        not kwargs
        and not switches.lax_only_active()
        and takes(lhs, rhs, dimension_numbers, preferred_element_type)
        and onednn.wanted()
        and fast(lhs.size // lhs.shape[-1], *rhs.shape, str(lhs.dtype))
    ):
        rows = lhs.reshape(-1, lhs.shape[-1])
        return matmul(rows, rhs).reshape(*lhs.shape[:-1], rhs.shape[1])
    return lax.dot_general(
        lhs,
        rhs,
        dimension_numbers,
        precision=precision,
        preferred_element_type=preferred_element_type,
        **kwargs,
    )


def matmul(a, b):
    """a @ b by oneDNN, differentiable in both operands.

    Args:
      a: (M, K), float32 or bfloat16.
      b: (K, N), a's dtype.

    Returns:
      (M, N) in a's dtype.

    Raises:
      OneDNNUnavailable: the extension is not built (check `onednn.available()` first).
    """
    if not onednn.available():
        raise onednn.OneDNNUnavailable(onednn.status())
    return _matmul(a, b)


def _call(a, b, transpose_a: bool, transpose_b: bool, shape):
    out = jax.ShapeDtypeStruct(shape, a.dtype)
    call = jax.ffi.ffi_call(onednn.MATMUL_TARGET, out, vmap_method="sequential")
    return call(a, b, transpose_a=np.int64(transpose_a), transpose_b=np.int64(transpose_b))


@jax.custom_vjp
def _matmul(a, b):
    return _call(a, b, False, False, (a.shape[0], b.shape[1]))


def _matmul_fwd(a, b):
    return _matmul(a, b), (a, b)


def _matmul_bwd(residuals, dy):
    a, b = residuals
    dy = dy.astype(a.dtype)
    da = _call(dy, b, False, True, a.shape)  # dy @ b^T, b read transposed in place
    db = _call(a, dy, True, False, b.shape)  # a^T @ dy
    return da, db


_matmul.defvjp(_matmul_fwd, _matmul_bwd)
