"""XLA flags cnnx sets by default: `apply()` appends them to `XLA_FLAGS`.

XLA reads `XLA_FLAGS` once, when JAX starts its first backend, so the entry points (train.py,
eval.py, scripts/*.py) and tests/conftest.py call `apply()` near their top, before the first
JAX computation; importing cnnx does not touch the environment. A flag that `XLA_FLAGS` already
names is left as the user set it; `CNNX_XLA_DEFAULTS=off` in the environment turns all of them
off (`cnnx.backends.switches`). A flag is named after the XLA backend it tunes (`xla_cpu_*`,
`xla_gpu_*`); XLA knows every backend's flags, so one list serves every platform. This module
must not import JAX.

Each flag is kept because `scripts/benchmark.py` measured it to help (docs/xla_cpu.md):

* `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution` (jaxlib 0.10): XLA:CPU
  hands single convolutions to YNNPACK by default, whose convolution and weight gradient are
  slower than XLA's own (Eigen) on every ResNet shape measured. Matrix products stay with
  YNNPACK (`-` removes only convolutions from the default list). The flag and its value exist
  in jaxlib 0.10, so it is set only there: an unknown flag or value makes XLA abort at
  start-up. Re-measure before widening the range.
"""

import logging
import os
import sys

from cnnx.backends import switches

# flag -> (value, (lowest, highest) jaxlib (major, minor) versions it is set for).
DEFAULTS = {
    "xla_cpu_experimental_ynn_fusion_type": ("-individual_convolution", ((0, 10), (0, 10))),
}


def _jaxlib_version() -> tuple[int, int] | None:
    from importlib import metadata

    try:
        parts = metadata.version("jaxlib").split(".")
        return int(parts[0]), int(parts[1])
    except (metadata.PackageNotFoundError, ValueError, IndexError):
        return None


def _backends_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return False


def apply(environ=os.environ) -> list[str]:
    """Appends the default flags that apply to this jaxlib to `XLA_FLAGS`.

    Args:
      environ: the environment to change (os.environ; tests pass a dict).

    Returns:
      The flags added (`--name=value`), possibly none.

    Raises:
      ConfigError: `CNNX_XLA_DEFAULTS` has a value other than on/off (or 1/0, true/false).
    """
    if not switches.xla_defaults(environ):
        return []
    version = _jaxlib_version()
    current = environ.get("XLA_FLAGS", "")
    added = []
    for name, (value, (lo, hi)) in DEFAULTS.items():
        if f"--{name}" in current or version is None or not lo <= version <= hi:
            continue
        added.append(f"--{name}={value}")
    if added:
        environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
        if environ is os.environ and _backends_started():
            logging.getLogger(__name__).warning(
                "JAX started before cnnx's XLA flags were applied, so %s has no effect; "
                "call cnnx.process_defaults.apply() first or set XLA_FLAGS yourself.",
                " ".join(added),
            )
    return added
