"""Training and evaluation inputs: NumPy batches per process, then global `jax.Array`s sharded
over the mesh (`to_global`).

Training: the split is shuffled with a seed derived from (seed, epoch) and each example is
augmented with a stateless seed derived from (seed, epoch, example index); batches drop the
remainder. The data order is therefore a pure function of (seed, epoch): resuming at step s
rebuilds epoch s // steps_per_epoch and skips the batches already seen, giving exactly the
batches an uninterrupted run would have seen (with repeated augmentation too: `repeated`).
Sources that can list the whole split cheaply
(digits, synthetic, folders) are shuffled globally and each process keeps its rows of every
global batch, so 1 process × 8 devices and 2 processes × 4 devices see identical batches;
TFDS sources are read per process (`tfds.split_for_jax_process`), each host reading 1/N of
the files.

Evaluation: every example counts exactly once. Each process pads its shard to the same number
of batches with masked examples (mask 0), so all processes run the same number of steps.

Two implementations give these batches:
  in_memory    in-memory sources (digits, synthetic) whose pp string has a batched form for
               every op (`cnnx.data.batched_ops`: decode, resize, resize_crop, random_crop,
               flip, normalize): NumPy, no TensorFlow; each batch of example indices is
               gathered and preprocessed at once.
  tf_pipeline  everything else (TFDS, image folders, ops such as inception_crop): tf.data,
               one example at a time; TensorFlow is imported only then.
The in-memory path reproduces tf.data's shuffle and TensorFlow's random draws and arithmetic
bit for bit, so every example gets the same image, label and place in the order on either
path (tests/data compares them), and results do not depend on which one ran.
"""

import dataclasses
import math
from collections.abc import Iterator

import numpy as np

from cnnx.data import in_memory
from cnnx.data import pp as pp_lib
from cnnx.data.sources import Source, check_labels, process_slice
from cnnx.errors import ConfigError, DataError


def _checked(batches, source: Source, split: str) -> Iterator[dict[str, np.ndarray]]:
    """Yields numpy batches; after each batch the source reports what loading found (corrupt
    files: logged, or an error). Labels are checked against the source's class count (the
    model's; see `decide_num_classes`) on the host, where it costs nothing: TFDS and folder
    labels are only seen here."""
    for batch in batches:
        source.check()
        check_labels(batch["label"], source.num_classes, f"split {split!r} of {source.name}")
        yield batch


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle and of its examples' augmentation, in [0, 2**31 - 1)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] % (2**31 - 1))


@dataclasses.dataclass
class TrainInput:
    """Endless training batches starting at a given step.

    `batched`: whether the in-memory NumPy path runs (see the module docstring).
    """

    source: Source
    split: str
    pp: str
    ctx: pp_lib.PPContext
    global_batch: int
    seed: int = 0
    shuffle_buffer: int = 10_000
    cache: bool = False
    process_index: int = 0
    process_count: int = 1
    repeats: int = 1  # repeated augmentation: each image this many times per batch

    def __post_init__(self):
        if self.global_batch % self.process_count:
            raise ConfigError(
                f"Batch size {self.global_batch} does not divide over {self.process_count} "
                "processes; choose a multiple."
            )
        self.local_batch = self.global_batch // self.process_count
        n = self.num_split = self.source.num_examples(self.split)
        self.global_order = self.source.global_order
        readers = 1 if self.global_order else self.process_count
        self.examples_per_reader = len(process_slice(n, 0, readers, True))
        self.steps_per_epoch = self.examples_per_reader // (self.global_batch // readers)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"Split {self.split!r} of {self.source.name} has {n} examples, fewer than one "
                f"global batch of {self.global_batch}; lower --config.train.batch_size."
            )
        if self.repeats < 1:
            raise ConfigError(f"--config.data.repeated_augmentation={self.repeats} must be >= 1.")
        self.batched = self.source.in_memory and self.global_order and pp_lib.has_batched(self.pp)
        if self.batched:
            self._batches = in_memory.TrainBatches(self)
        else:
            from cnnx.data import tf_pipeline  # TensorFlow: per-example preprocessing

            self._batches = tf_pipeline.TrainPipeline(self)

    def epoch_seed(self, epoch: int) -> int:
        """The seed of epoch `epoch` (its shuffle; each example's seed is (it, index))."""
        return epoch_seed(self.seed, epoch)

    def iterate(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Local numpy batches from `start_step` on, forever: `image` (B, S, S, C) float32,
        `label` (B,) int32, `index` (B,) int64 (each example's position in the split)."""
        epoch, skip = divmod(start_step, self.steps_per_epoch)
        yield from _checked(self._batches.iterate(epoch, skip), self.source, self.split)


@dataclasses.dataclass
class EvalInput:
    """One pass over an evaluation split, padded and masked to whole global batches.

    `batched`: whether the in-memory NumPy path runs (see the module docstring).
    """

    source: Source
    split: str
    pp: str
    ctx: pp_lib.PPContext
    global_batch: int
    process_index: int = 0
    process_count: int = 1

    def __post_init__(self):
        if self.global_batch % self.process_count:
            raise ConfigError(
                f"Eval batch size {self.global_batch} does not divide over {self.process_count} "
                "processes; choose a multiple."
            )
        self.local_batch = self.global_batch // self.process_count
        self.num_examples = self.source.num_examples(self.split)
        if self.num_examples == 0:
            raise ConfigError(
                f"Evaluation split {self.split!r} of {self.source.name} has no examples; check "
                "the slice (e.g. test[:1000] of a 500-example split is fine, test[1000:] is "
                "empty)."
            )
        largest = len(process_slice(self.num_examples, 0, self.process_count, False))
        self.num_batches = max(1, math.ceil(largest / self.local_batch))
        self.batched = self.source.in_memory and pp_lib.has_batched(self.pp)
        if self.batched:
            self._batches = in_memory.EvalBatches(self)
        else:
            from cnnx.data import tf_pipeline  # TensorFlow: per-example preprocessing

            self._batches = tf_pipeline.EvalPipeline(self)

    def check_count(self, n: float) -> None:
        """Asserts that a pass counted every example once (skipped corrupt files excepted)."""
        if n == 0:
            raise DataError(f"No readable example in split {self.split!r} of {self.source.name}.")
        if n != self.num_examples and not getattr(self.source, "corrupt", None):
            raise AssertionError(f"evaluated {n} examples, expected {self.num_examples}")

    def iterate(self) -> Iterator[dict[str, np.ndarray]]:
        """This process's `num_batches` batches of `local_batch` examples, padded (mask 0):
        `image` float32, `label` int32, `mask` float32."""
        return _checked(self._batches.iterate(), self.source, self.split)


def to_global(batch: dict[str, np.ndarray], sharding) -> dict:
    """Assembles per-process numpy batches into global arrays sharded over the batch axis
    (`sharding`: a `jax.sharding.Sharding`)."""
    import jax  # here: importing the data package needs no JAX

    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
    }
