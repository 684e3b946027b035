"""The one door to platform kernels: layers, the loop and the analysis import this package only.

Each kernel below dispatches, when a layer is traced, to the routes of the platform it is
traced for (`routes.platform()`: JAX's default backend, or the CPU under
`CNNX_CPU_GRADS=custom`): `cpu/` on XLA:CPU, the portable `lax` / `flax.linen` formulation
elsewhere. Every route gives the portable values (to float rounding) and parameters.

- `conv_general_dilated`: `lax.conv_general_dilated`'s signature (pass it to `nn.Conv`).
- `dot_general`: `lax.dot_general`'s signature (pass it to `nn.Dense`).
- `max_pool`: `flax.linen.max_pool(x, window_shape, strides, padding)`.
- `layer_norm`, `gelu`, `attention`, `self_attention`: the transformer layers' hooks
  (`split_heads`: the packed q, k, v layout they share).
- `lax_only()`: within it convolutions trace as `conv_general_dilated` equations (analysis).
- `portable_only()`: within it every kernel takes the portable route (`jax.export` artefacts).
- `describe()`: one line for a run's log, which convolutions run and why.
- `remat_compiler_options(backend)`: XLA options a rematerialised step needs there.
- `conv_kernels()`: the platform's own convolutions by name (benchmarks).
- `apply_xla_flags(environ)`: cnnx's default `XLA_FLAGS` (before JAX starts).

Modules (importing this package imports neither JAX nor a platform module):

  switches   every `CNNX_*` environment variable, its values and errors; `lax_only`,
             `portable_only`
  xla_flags  the XLA flags the entry points add to `XLA_FLAGS`
  routes     `Routes` (a platform's kernels), the platform table, `platform()`
  portable   the plain lax / flax formulations every platform falls back to
  chips      accelerator chips by JAX's device_kind: peak TFLOP/s, what model.dtype='auto' picks
  cpu/       XLA:CPU: oneDNN convolutions and dense products (an FFI extension built by
             `make install`), custom gradients for 1x1 and depthwise convolutions, max
             pooling, LayerNorm, GELU and self-attention; a GPU or TPU module joins the same
             way (`routes.PLATFORMS`)
"""

from cnnx.backends import switches, xla_flags
from cnnx.backends.switches import lax_only, portable_only

apply_xla_flags = xla_flags.apply


def _active():
    from cnnx.backends import routes

    return routes.active()


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
    """`lax.conv_general_dilated` on the platform's route (same signature and values).

    Raises:
      ConfigError: a `CNNX_*` switch has an undocumented value.
      cnnx.backends.cpu.onednn.OneDNNUnavailable: `CNNX_ONEDNN=on` without the extension.
    """
    return _active().conv_general_dilated(
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


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kwargs):
    """`lax.dot_general` on the platform's route (same signature and values).

    Raises:
      ConfigError: a `CNNX_*` switch has an undocumented value.
      cnnx.backends.cpu.onednn.OneDNNUnavailable: `CNNX_ONEDNN=on` without the extension.
    """
    return _active().dot_general(
        lhs,
        rhs,
        dimension_numbers,
        precision=precision,
        preferred_element_type=preferred_element_type,
        **kwargs,
    )


def max_pool(x, window_shape, strides, padding):
    """`flax.linen.max_pool`'s values on the platform's route (strides: a tuple)."""
    return _active().max_pool(x, window_shape, strides, padding)


def layer_norm(epsilon: float, name: str, dtype=None):
    """A LayerNorm module over the last axis with torch's two-pass variance.

    Args:
      epsilon: added to the variance.
      name: module name.
      dtype: compute dtype (None: float32); scale and bias stay float32.

    Returns:
      `nn.LayerNorm`, or the platform's module with the same parameters and values.
    """
    import jax.numpy as jnp

    return _active().layer_norm(epsilon, name, jnp.float32 if dtype is None else dtype)


def gelu(x):
    """torch's exact (erf) GELU, x's shape and dtype, on the platform's route."""
    return _active().gelu(x)


def attention(q, k, v, bias=None, dropout=None):
    """Scaled dot-product attention over (..., heads, N, head_dim) tensors.

    Args:
      q, k, v: queries, keys, values.
      bias: added to the logits before the softmax (relative position bias, masks).
      dropout: applied to the attention weights (a callable), or None.

    Returns:
      (..., N, heads · head_dim) with heads concatenated in order.
    """
    return _active().attention(q, k, v, bias, dropout)


def split_heads(qkv, num_heads: int):
    """(..., N, 3·C) packed projections -> q, k, v of shape (..., heads, N, C / heads).

    The packing is torch's, [q | k | v] along the channel axis, each split into heads: the
    layout `self_attention` reads on every route.
    """
    from cnnx.backends import portable

    q, k, v = portable.heads_first(qkv, num_heads)
    return q, k, v


def self_attention(qkv, num_heads: int, dropout=None):
    """Softmax self-attention from packed (..., N, 3·C) projections ([q | k | v], torch's).

    Args:
      qkv: the packed projections; C divisible by `num_heads`.
      num_heads: heads.
      dropout: applied to the attention weights (a callable), or None.

    Returns:
      (..., N, C), heads merged in order.
    """
    return _active().self_attention(qkv, num_heads, dropout)


def describe() -> str:
    """One line for a run's log: which convolutions a program traced now runs, and why."""
    return _active().describe()


def conv_kernels() -> dict:
    """The platform's own convolutions by name (`routes.ConvKernel`); none on the portable
    routes. Benchmarks time them against XLA's."""
    return _active().conv_kernels()


def remat_compiler_options(backend: str | None = None) -> dict[str, str] | None:
    """XLA options a step with remat needs on `backend` (default: JAX's) to keep its savings.

    None except where the platform needs some (XLA:CPU would otherwise undo
    rematerialisation: `cnnx.backends.cpu.REMAT_COMPILER_OPTIONS`). Pass the result as
    `jax.jit(..., compiler_options=...)` or `Lowered.compile(...)`.
    """
    from cnnx.backends import routes

    if backend is None:
        import jax

        backend = jax.default_backend()
    options = routes.for_platform(backend).remat_compiler_options
    return None if options is None else dict(options)


__all__ = [
    "apply_xla_flags",
    "attention",
    "conv_general_dilated",
    "conv_kernels",
    "describe",
    "dot_general",
    "gelu",
    "lax_only",
    "layer_norm",
    "max_pool",
    "portable_only",
    "remat_compiler_options",
    "self_attention",
    "split_heads",
    "switches",
]
