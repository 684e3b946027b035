"""Data: sources by name, preprocessing ops, and the training and evaluation pipelines.

  pp           the preprocessing-op registry: `op`, `parse`, `build`, `PPContext`
  image_header an encoded image's pixel count before decoding (decompression bombs)
  preprocess   basic ops in tf.data (decode, resize, crops, flip, normalize)
  augment      training augmentations (colour, lighting, cutout, erasing, Auto/RandAugment,
               TrivialAugment, AugMix)
  autoaugment  the image operations and policies of AutoAugment / RandAugment
  wide_augment TrivialAugmentWide and AugMix (torchvision's), on autoaugment's image operations
  batched_ops  the basic ops on NumPy batches, exactly the tf.data results
  tf_random    TensorFlow's stateless random draws and shuffle order in NumPy
  sources      sources by name (`get_source`, the `SOURCES` table): digits, synthetic
  folder       the `folder:<path>` source
  tfds_source  the `tfds:<name>` source
  prepare      `python -m cnnx.data.prepare <name>`: TFDS download and preparation, checked
  pipeline     training and evaluation inputs (`TrainInput`, `EvalInput`, `to_global`)
  in_memory    their NumPy path: in-memory sources with batched ops
  tf_pipeline  their tf.data path: everything else
  repeated     repeated augmentation: the order rules shared by both paths
  mixing       Mixup / CutMix on device

Importing the package imports neither TensorFlow nor JAX: its names below load on first use
(PEP 562), the folder and TFDS sources register themselves without TensorFlow (they import it
when resolved), and the op registry loads the op modules when a pp string needs them
(`cnnx.data.pp.load_ops`). Digits and synthetic data with batched ops run without TensorFlow.
"""

import importlib

from cnnx.data import folder, tfds_source  # noqa: F401 (they register their sources)

# Public name -> the module that defines it.
_EXPORTS = {
    "EvalInput": "cnnx.data.pipeline",
    "TrainInput": "cnnx.data.pipeline",
    "to_global": "cnnx.data.pipeline",
    "PPContext": "cnnx.data.pp",
    "Source": "cnnx.data.sources",
    "get_source": "cnnx.data.sources",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnx.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
