"""The CPU routes: oneDNN convolutions, custom gradients where XLA:CPU is slow.

Reached only through `cnnx.backends` (tests/backends/test_backend_door.py checks it), which
calls `routes()` for layers traced on the CPU.

- `conv`: `conv_general_dilated`, a drop-in for `lax.conv_general_dilated` (oneDNN when
  built; otherwise 1x1 weight gradient as a matrix product and depthwise convolutions routed
  to `depthwise`).
- `onednn`: convolutions, input and weight gradients by oneDNN through XLA's FFI (an optional
  C++ extension, `onednn_conv.cc`, built by `make install`; switch `CNNX_ONEDNN`).
- `dense`: `dot_general`, dense layers' matrix products and both gradients by oneDNN's matmul
  (`onednn_matmul.cc`, in the same extension, on the same switch).
- `depthwise`: depthwise convolution as shifted multiply-adds with its own gradients.
- `pool`: max pooling with a direct (not argmax-scatter) gradient.
- `transformer`: LayerNorm, GELU and packed self-attention with closed-form gradients.
- `REMAT_COMPILER_OPTIONS`: what a rematerialised step needs on XLA:CPU.

The custom gradients share one switch, `CNNX_CPU_GRADS` (`cnnx.backends.switches`), read when
a layer is traced: 'auto' (default: on when JAX's default backend is the CPU), 'xla' (off:
only oneDNN's convolutions, on their own switch, remain) or 'custom' (on, whatever the
backend; tests use it). Forward results are XLA's own; gradients agree to float rounding
(tests/backends/). Why each one exists and what it gained: docs/xla_cpu.md.
"""

import dataclasses
import functools

from cnnx.backends import switches

# XLA:CPU expands jax.checkpoint's optimisation barriers early (`cse_barrier_expander`), after
# which common-subexpression elimination merges the backward pass's recomputation with the
# forward pass: the program stores every activation again and needs more memory than without
# remat. Keeping the pass off keeps remat's savings (a 16-block MLP: 520 MiB of temporaries
# without remat, 640 with, 160 with the pass off).
REMAT_COMPILER_OPTIONS = {"xla_disable_hlo_passes": "cse_barrier_expander"}


def forced() -> bool:
    """Whether `CNNX_CPU_GRADS=custom` forces the custom gradients on."""
    return switches.cpu_grads() == "custom"


def enabled() -> bool:
    """Whether convolutions and pools traced now take the custom CPU gradients.

    `CNNX_CPU_GRADS`: 'auto' (default: on when JAX's default backend is the CPU), 'xla' (off)
    or 'custom' (on).
    """
    setting = switches.cpu_grads()
    if setting != "auto":
        return setting == "custom"
    import jax  # here, so that importing the package does not pull it in

    return jax.default_backend() == "cpu"


def routes():
    """The CPU's `Routes` under the switches now: all of them, or (`CNNX_CPU_GRADS=xla`)
    only the convolution and the dense product, whose oneDNN paths have their own switch."""
    full, convolutions_only = _routes()
    return full if enabled() else convolutions_only


@functools.cache
def _routes():
    from cnnx.backends import portable
    from cnnx.backends.cpu import conv, dense, onednn, pool, transformer

    convolutions_only = dataclasses.replace(
        portable.ROUTES,
        name="cpu",
        conv_general_dilated=conv.conv_general_dilated,
        dot_general=dense.dot_general,
        describe=onednn.describe,
        conv_kernels=conv.kernels,
        remat_compiler_options=REMAT_COMPILER_OPTIONS,
    )
    full = dataclasses.replace(
        convolutions_only,
        max_pool=pool.max_pool,
        layer_norm=transformer.layer_norm,
        gelu=transformer.gelu,
        self_attention=transformer.self_attention,
    )
    return full, convolutions_only
