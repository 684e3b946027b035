"""Data: sources by name, preprocessing ops, and sharded tf.data pipelines.

  pp          the preprocessing-op registry: `op`, `parse`, `build`, `PPContext`
  preprocess  basic ops (decode, resize, crops, flip, normalize)
  augment     training augmentations (colour, lighting, cutout, erasing, Auto/RandAugment)
  sources     sources by name (`get_source`, the `SOURCES` table): digits, synthetic, tfds
  folder      the `folder:<path>` source
  pipeline    training and evaluation pipelines (`TrainInput`, `EvalInput`)
  mixing      Mixup / CutMix on device

Importing the package registers the ops of `preprocess` and `augment` and the folder source
(`cnnx.evaluate.views` registers the test-time view ops when imported).
"""

from cnnx.data import augment, folder, preprocess  # noqa: F401 (they register ops, sources)
from cnnx.data.pipeline import EvalInput, TrainInput, to_global
from cnnx.data.pp import PPContext
from cnnx.data.sources import Source, get_source

__all__ = ["EvalInput", "PPContext", "Source", "TrainInput", "get_source", "to_global"]
