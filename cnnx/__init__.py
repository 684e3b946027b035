"""cnnx: image classification architectures in JAX/Flax, with the tools to train and study them."""

import os as _os

from cnnx import xla_defaults as _xla_defaults

# gs:// paths through gcsfs (etils.epath's fsspec backend), not TensorFlow's GCS client: gcsfs
# follows STORAGE_EMULATOR_HOST like the other Cloud Storage clients, TF's has no endpoint
# setting. Before any gs:// path is opened (etils reads it once); see cnnx/train/workdir.py.
_os.environ.setdefault("EPATH_USE_TF", "false")

__version__ = "0.1.0"

# Before any JAX backend starts (XLA reads XLA_FLAGS once); see cnnx/xla_defaults.py.
_xla_defaults.apply()
