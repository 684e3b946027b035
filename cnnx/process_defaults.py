"""What cnnx's entry points set in their process before JAX, TensorFlow or etils start.

Importing cnnx changes nothing in the process; train.py, eval.py, every scripts/*.py and
tests/conftest.py call `apply()` near their top instead. Every setting is a default: a value the
user already has in the environment wins.

* cnnx's XLA flags (`cnnx.backends.xla_flags`; `CNNX_XLA_DEFAULTS=off` turns them off).
* `EPATH_USE_TF=false`: gs:// paths go through gcsfs (etils.epath's fsspec backend), which
  follows `STORAGE_EMULATOR_HOST` like the other Cloud Storage clients; TensorFlow's GCS client
  has no endpoint setting. etils reads the variable at each path, so it only has to be set
  before the first gs:// path is opened.
* `TF_ENABLE_ONEDNN_OPTS=0`: TensorFlow's oneDNN notice printed at import; tf.data's image ops
  give the same results either way (set it to 1 to have them back).
* `TF_CPP_MIN_LOG_LEVEL=2`: TensorFlow's C++ info and warning lines.

TensorFlow itself is imported only where TF data is read, through `import_tensorflow`, which
keeps it off the accelerators and names what to install when it is missing.

This module must not import JAX or TensorFlow (`import_tensorflow` does, when called).
"""

import contextlib
import functools
import os

from cnnx import backends
from cnnx.errors import MissingDependency

# What to install for the data that TensorFlow reads (tf.data pipelines, TFDS, image folders).
TFDATA_INSTALL = (
    "pip install 'cnnx[tfdata]' (or pip install tensorflow-cpu tensorflow-datasets, at the "
    "versions requirements.txt pins)"
)

ENVIRONMENT = {
    "EPATH_USE_TF": "false",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def apply(environ=os.environ) -> None:
    """Sets cnnx's process defaults in `environ` (os.environ; tests pass a dict), keeping every
    value already there. Call before the first JAX computation (XLA reads XLA_FLAGS once)."""
    backends.apply_xla_flags(environ)
    for name, value in ENVIRONMENT.items():
        environ.setdefault(name, value)


def import_tensorflow(purpose: str, datasets: bool = False):
    """TensorFlow, for a feature that reads data with it; the process's other parts never
    import it (models, steps, checkpoints, writers, in-memory data).

    The first call hides the accelerators from TensorFlow: tf.data runs on the host, and the
    GPUs belong to jax (a TensorFlow that initialises them takes their memory).

    Args:
      purpose: what needs TensorFlow, as the user wrote it (e.g.
        "--config.data.source=tfds:cifar10"), for the error.
      datasets: TensorFlow Datasets is needed too.

    Returns:
      The `tensorflow` module.

    Raises:
      MissingDependency: TensorFlow (or TFDS) cannot be imported; one line naming `purpose`
        and what to install.
    """
    try:
        tf = _tensorflow_on_the_host()
        if datasets:
            import tensorflow_datasets  # noqa: F401
    except ImportError as e:
        needs = "TensorFlow and TensorFlow Datasets" if datasets else "TensorFlow"
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise MissingDependency(
            f"{purpose} reads data with {needs}, which cannot be imported here ({why}); "
            f"install with {TFDATA_INSTALL}. Digits and synthetic data need neither."
        ) from None
    return tf


@functools.cache
def _tensorflow_on_the_host():
    import tensorflow as tf

    # RuntimeError: TensorFlow's devices were initialised before the first call.
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices([], "GPU")
    return tf
