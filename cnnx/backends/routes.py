"""Which kernels a platform runs: the `Routes` a platform module gives, and how one is chosen.

A platform joins by a module under `cnnx/backends/` whose `routes()` returns its `Routes`
(usually `dataclasses.replace(portable.ROUTES, ...)` with the kernels it has), and one line in
`PLATFORMS`. Everything it leaves alone keeps the portable formulation (`cnnx.backends.portable`).
Routes must give the portable formulation's values (to float rounding) and parameters, so a
checkpoint or converted weights work on every platform.

The routes of the platform a layer is traced for are chosen by `platform()`: JAX's default
backend, or the CPU under `CNNX_CPU_GRADS=custom` (tests force the CPU routes with it).
"""

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from cnnx.backends import switches

# platform (a `jax.default_backend()` name) -> the module whose `routes()` gives its Routes.
PLATFORMS = {"cpu": "cnnx.backends.cpu"}


@dataclasses.dataclass(frozen=True)
class ConvKernel:
    """One of a platform's own convolutions, for benchmarks that time it against XLA's.

    Attributes:
      fn: `fn(x, w, strides, padding, groups)` on an NHWC input and an HWIO kernel
        (padding: ((top, bottom), (left, right))), differentiable in x and w.
      depthwise_only: it computes depthwise convolutions (groups = channels) only.
    """

    fn: Callable
    depthwise_only: bool = False


@dataclasses.dataclass(frozen=True)
class Routes:
    """A platform's kernels; the signatures are the portable formulations' (`portable`).

    Attributes:
      name: the platform ('portable' for the fallback).
      conv_general_dilated: `lax.conv_general_dilated`'s signature and values.
      dot_general: `lax.dot_general`'s signature and values (dense layers' products).
      max_pool: `max_pool(x, window_shape, strides, padding)`, `flax.linen.max_pool`'s values.
      layer_norm: `layer_norm(epsilon, name, dtype)` -> a module with `nn.LayerNorm`'s
        parameters (`scale`, `bias`) and torch's two-pass variance.
      gelu: the exact (erf) GELU, x -> x.
      attention: `attention(q, k, v, bias, dropout)`, scaled dot-product attention over
        (..., heads, N, head_dim) -> (..., N, heads * head_dim).
      self_attention: `self_attention(qkv, num_heads, dropout)`, from packed (..., N, 3 C)
        projections (torch's [q | k | v]) to merged (..., N, C) heads.
      describe: () -> one line for a run's log: which convolutions run, and why.
      conv_kernels: () -> the platform's own convolutions by name (`ConvKernel`).
      remat_compiler_options: XLA options a rematerialised step needs here, or None.
    """

    name: str
    conv_general_dilated: Callable
    dot_general: Callable
    max_pool: Callable
    layer_norm: Callable
    gelu: Callable
    attention: Callable
    self_attention: Callable
    describe: Callable[[], str]
    conv_kernels: Callable[[], dict[str, ConvKernel]]
    remat_compiler_options: dict[str, Any] | None = None


def platform() -> str:
    """The platform whose routes layers traced now take.

    JAX's default backend ('cpu', 'gpu', 'tpu'), or 'cpu' under `CNNX_CPU_GRADS=custom`.
    """
    if switches.cpu_grads() == "custom":
        return "cpu"
    import jax  # here: `cnnx.backends` imports this module before JAX may start

    return jax.default_backend()


def for_platform(name: str) -> Routes:
    """The routes registered for platform `name`, else the portable ones."""
    module = PLATFORMS.get(name)
    if module is None:
        from cnnx.backends import portable

        return portable.ROUTES
    return importlib.import_module(module).routes()


def active() -> Routes:
    """The routes for layers traced now: `for_platform(platform())`, or the portable ones
    inside `switches.portable_only()`."""
    if switches.portable_only_active():
        return for_platform("portable")
    return for_platform(platform())
