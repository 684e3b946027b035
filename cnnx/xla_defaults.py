"""XLA flags cnnx sets by default, appended to `XLA_FLAGS` when `cnnx` is imported.

XLA reads `XLA_FLAGS` once, when JAX starts its first backend, so `import cnnx` must come
before the first JAX computation (the entry points, scripts and tests all do this). A flag
that `XLA_FLAGS` already names is left as the user set it; `CNNX_XLA_DEFAULTS=0` in the
environment turns all of them off.

Each flag is kept because `scripts/benchmark.py` measured it to help (see README,
"Performance"):

* `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution` (jaxlib 0.10): XLA:CPU
  hands single convolutions to YNNPACK by default. YNNPACK's convolution is 2-4x slower
  than XLA's own (Eigen) convolution on every ResNet shape measured, and the weight gradient
  up to 4x slower (1x1, 56x56x256 -> 64: 7 vs 30 GFLOP/s; 3x3, 56x56x64: 28 vs 110 GFLOP/s
  on two Sapphire Rapids cores); ResNet-50 training went from 0.77 to 1.2 images/s on a
  loaded machine. Matrix products stay with YNNPACK (`-` removes only convolutions from the
  default list). The flag and its value exist in jaxlib 0.10, so it is set only there: an
  unknown flag or value makes XLA abort at start-up. Re-measure before widening the range.
"""

import logging
import os
import sys

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
    """
    if environ.get("CNNX_XLA_DEFAULTS", "1").lower() in ("0", "false", "off"):
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
                "JAX started before cnnx was imported, so %s has no effect; import cnnx "
                "first or set XLA_FLAGS yourself.",
                " ".join(added),
            )
    return added
