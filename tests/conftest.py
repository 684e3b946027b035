"""Test setup: 8 fake CPU devices (sharding tests) and cnnx's XLA flags, set before JAX starts."""

import os

# --xla_backend_optimization_level=0: LLVM compiles without optimisation. Tests are dominated
# by compiling, which this makes much faster, while running gets slower; speed is measured by
# scripts/benchmark.py, not by tests.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # torch and tf: stay on the CPU

# torch (with torchvision / timm) must be imported before TensorFlow: the reverse order
# segfaults in this environment. Import them first, when installed (requirements-dev.txt).
try:
    import timm  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:
    pass

import jax
import pytest

from cnnx.backends.cpu import flags as xla_flags

# cnnx's default XLA flags, as the entry points add them (before JAX starts its backend).
xla_flags.apply()
jax.config.update("jax_platforms", "cpu")


@pytest.fixture(scope="session", autouse=True)
def _hide_gpus_from_tf():
    """tf.data must never grab an accelerator that jax uses."""
    try:
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
    except Exception:
        pass
