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

This module must not import JAX or TensorFlow.
"""

import os

from cnnx import backends

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
