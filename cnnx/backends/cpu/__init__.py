"""Fast CPU paths: oneDNN convolutions, custom gradients where XLA:CPU is slow, XLA flags.

- `conv`: `conv_general_dilated`, a drop-in for `lax.conv_general_dilated` (oneDNN when
  built; otherwise 1x1 weight gradient as a matrix product and depthwise convolutions routed
  to `depthwise`).
- `onednn`: convolutions, input and weight gradients by oneDNN through XLA's FFI (an optional
  C++ extension, `onednn_conv.cc`, built by `make install`; switch `CNNX_ONEDNN`).
- `depthwise`: depthwise convolution as shifted multiply-adds with its own gradients.
- `pool`: max pooling with a direct (not argmax-scatter) gradient.
- `flags`: the XLA flags `apply()` adds to `XLA_FLAGS`; the entry points (train.py, eval.py,
  scripts/*.py) and tests/conftest.py call it before JAX starts (importing cnnx does not).
- `REMAT_COMPILER_OPTIONS`: what a rematerialised step needs on XLA:CPU (read through
  `cnnx.layers.remat.compiler_options`).

The custom gradients share one switch, the `CNNX_CPU_GRADS` environment variable, read when a
layer is traced: 'auto' (default: on when JAX's default backend is the CPU), 'xla' (off: plain
`lax` everywhere) or 'custom' (on, whatever the backend; tests use it). Forward results are
XLA's own; gradients agree to float rounding (tests/backends/). Why each one exists and what it
gained: docs/xla_cpu.md.
"""

import os

SWITCH = "CNNX_CPU_GRADS"

# XLA:CPU expands jax.checkpoint's optimisation barriers early (`cse_barrier_expander`), after
# which common-subexpression elimination merges the backward pass's recomputation with the
# forward pass: the program stores every activation again and needs more memory than without
# remat. Keeping the pass off keeps remat's savings (a 16-block MLP: 520 MiB of temporaries
# without remat, 640 with, 160 with the pass off).
REMAT_COMPILER_OPTIONS = {"xla_disable_hlo_passes": "cse_barrier_expander"}


def _setting() -> str:
    return os.environ.get(SWITCH, "auto").lower()


def forced() -> bool:
    """Whether `CNNX_CPU_GRADS` forces the custom gradients on ('custom', 'on' or '1')."""
    return _setting() in ("custom", "on", "1")


def enabled() -> bool:
    """Whether convolutions and pools traced now take the custom CPU gradients.

    `CNNX_CPU_GRADS`: 'auto' (default: on when JAX's default backend is the CPU), 'xla' (off)
    or 'custom' (on).
    """
    if _setting() in ("xla", "off", "0"):
        return False
    if forced():
        return True
    import jax  # here, so that `flags` (imported before JAX starts) does not pull it in

    return jax.default_backend() == "cpu"
