"""tf.data input pipelines that feed global `jax.Array`s sharded over the mesh.

Training: the split is shuffled with a seed derived from (seed, epoch) and each example is
augmented with a stateless seed derived from (seed, epoch, example index); batches drop the
remainder. The data order is therefore a pure function of (seed, epoch): resuming at step s
rebuilds epoch s // steps_per_epoch and skips the batches already seen, giving exactly the
batches an uninterrupted run would have seen. Sources that can list the whole split cheaply
(digits, synthetic, folders) are shuffled globally and each process keeps its rows of every
global batch, so 1 process × 8 devices and 2 processes × 4 devices see identical batches;
TFDS sources are read per process (`tfds.even_splits`), each host reading 1/N of the files.

Evaluation: every example counts exactly once. Each process pads its shard to the same number
of batches with masked examples (mask 0), so all processes run the same number of steps.
"""

import dataclasses
import math
from collections.abc import Iterator

import jax
import numpy as np
import tensorflow as tf

from cnnx.data import preprocess
from cnnx.data.sources import Source, process_slice
from cnnx.errors import ConfigError


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] % (2**31 - 1))


@dataclasses.dataclass
class TrainInput:
    """Endless training batches starting at a given step."""

    source: Source
    split: str
    pp: str
    ctx: preprocess.PPContext
    global_batch: int
    seed: int = 0
    shuffle_buffer: int = 10_000
    cache: bool = False
    process_index: int = 0
    process_count: int = 1

    def __post_init__(self):
        if self.global_batch % self.process_count:
            raise ConfigError(
                f"Batch size {self.global_batch} does not divide over {self.process_count} "
                "processes; choose a multiple."
            )
        self.local_batch = self.global_batch // self.process_count
        n = self.source.num_examples(self.split)
        self.global_order = self.source.global_order
        readers = 1 if self.global_order else self.process_count
        self.examples_per_reader = len(process_slice(n, 0, readers, True))
        self.steps_per_epoch = self.examples_per_reader // (self.global_batch // readers)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"Split {self.split!r} of {self.source.name} has {n} examples, fewer than one "
                f"global batch of {self.global_batch}; lower --config.train.batch_size."
            )
        self._pp = preprocess.build(self.pp, self.ctx)
        self._raw_cache = None

    def _raw(self, epoch: int) -> tf.data.Dataset:
        seed = _epoch_seed(self.seed, epoch)
        ds = self.source.dataset(
            self.split,
            process_index=0 if self.global_order else self.process_index,
            process_count=1 if self.global_order else self.process_count,
            drop_remainder=True,
            seed=seed,
        )
        if self.cache:
            if self._raw_cache is None:
                self._raw_cache = ds.cache()
            ds = self._raw_cache
        return ds

    def epoch_dataset(self, epoch: int, skip_batches: int = 0) -> tf.data.Dataset:
        """The batches of one epoch (per process), after skipping `skip_batches`."""
        eseed = _epoch_seed(self.seed, epoch)
        ds = self._raw(epoch).enumerate()
        ds = ds.shuffle(
            min(self.shuffle_buffer, self.examples_per_reader),
            seed=eseed,
            reshuffle_each_iteration=False,
        )
        if self.global_order:
            # Every process walks the same global order and keeps its rows of each batch.
            ds = ds.skip(skip_batches * self.global_batch)
            lo = self.process_index * self.local_batch
            ds = ds.batch(self.global_batch, drop_remainder=True)
            rows = slice(lo, lo + self.local_batch)
            ds = ds.map(lambda i, e: (i[rows], tf.nest.map_structure(lambda t: t[rows], e)))
            ds = ds.unbatch()
        else:
            ds = ds.skip(skip_batches * self.local_batch)

        def prepare(index, example):
            seed = tf.stack([tf.cast(eseed, tf.int64), index])
            features = self._pp({**self.source.load(example), "seed": seed})
            # `index` is the example's position in the split (fast linear probes use it).
            return {"image": features["image"], "label": features["label"], "index": index}

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(self.local_batch, drop_remainder=True)
        ds = ds.take(self.steps_per_epoch - skip_batches)
        return ds.prefetch(tf.data.AUTOTUNE)

    def iterate(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Local numpy batches from `start_step` on, forever."""
        epoch, skip = divmod(start_step, self.steps_per_epoch)
        while True:
            yield from self.epoch_dataset(epoch, skip).as_numpy_iterator()
            epoch, skip = epoch + 1, 0


@dataclasses.dataclass
class EvalInput:
    """One pass over an evaluation split, padded and masked to whole global batches."""

    source: Source
    split: str
    pp: str
    ctx: preprocess.PPContext
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
        largest = len(process_slice(self.num_examples, 0, self.process_count, False))
        self.num_batches = max(1, math.ceil(largest / self.local_batch))
        self._pp = preprocess.build(self.pp, self.ctx)

    def iterate(self) -> Iterator[dict[str, np.ndarray]]:
        ds = self.source.dataset(
            self.split,
            process_index=self.process_index,
            process_count=self.process_count,
            drop_remainder=False,
            seed=0,
        )

        def prepare(example):
            example = self.source.load(example)
            features = self._pp({**example, "seed": tf.constant([0, 0], tf.int64)})
            return {
                "image": features["image"],
                "label": features["label"],
                "mask": tf.constant(1.0, tf.float32),
            }

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        spec = ds.element_spec["image"].shape
        # Test-time view ops give (V, S, S, C) per example; the padding matches whatever shape.
        shape = spec.as_list() if spec.is_fully_defined() else [
            self.ctx.image_size, self.ctx.image_size, spec[-1]]  # fmt: skip
        pad = tf.data.Dataset.from_tensors(
            {
                "image": tf.zeros(shape, tf.float32),
                "label": tf.constant(0, tf.int32),
                "mask": tf.constant(0.0, tf.float32),
            }
        ).repeat()
        total = self.num_batches * self.local_batch
        ds = ds.concatenate(pad).take(total).batch(self.local_batch, drop_remainder=True)
        return ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()


def to_global(batch: dict[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict:
    """Assembles per-process numpy batches into global arrays sharded over the batch axis."""
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
    }
