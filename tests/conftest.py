"""Test setup: 8 fake CPU devices (sharding tests) and cnnx's process defaults, before JAX."""

import os

# --xla_backend_optimization_level=0: LLVM compiles without optimisation. Tests are dominated
# by compiling, which this makes much faster, while running gets slower; speed is measured by
# scripts/benchmark.py, not by tests.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
).strip()
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # torch and tf: stay on the CPU
# Test runs keep out of the user's persistent compilation cache (tests that exercise the cache,
# or tests/jax_cache.py, set their own folder through JAX's variables, which take precedence).
os.environ.setdefault("CNNX_COMPILATION_CACHE", "off")

# torch (with torchvision / timm) must be imported before TensorFlow: the reverse order
# segfaults in this environment. Import them first, when installed (requirements-dev.txt).
try:
    import timm  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:
    pass

import jax
import pytest

from cnnx import process_defaults

# cnnx's default XLA flags, as the entry points add them (before JAX starts its backend).
process_defaults.apply()
jax.config.update("jax_platforms", "cpu")


@pytest.fixture(scope="session", autouse=True)
def _hide_gpus_from_tf():
    """tf.data must never grab an accelerator that jax uses."""
    try:
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
    except Exception:
        pass
