"""In-memory pipelines in NumPy: digits and synthetic data, batched, without TensorFlow.

For an in-memory source whose pp string has a batched form for every op
(`cnnx.data.pp.has_batched`), each step's batch is gathered from the split's arrays and
preprocessed at once by the NumPy ops of `cnnx.data.batched_ops`. The order is tf.data's:
each epoch shuffles the example indices as `Dataset.range(n).shuffle(buffer, seed)` does
(`tf_random.shuffle_order`), and each example gets the stateless seed (epoch seed, index) of
the per-example path, whose draws and arithmetic the ops reproduce. The batches are therefore
bit for bit those of the tf.data pipeline (`cnnx.data.tf_pipeline`), which earlier runs read,
so a run resumes exactly whichever of the two wrote it. A background thread prepares the next
batches while the current step runs (what tf.data's prefetch did), several at once on a
machine with the cores for it.
"""

import collections
import concurrent.futures
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np

from cnnx.data import pp as pp_lib
from cnnx.data import repeated, tf_random
from cnnx.data.batched_ops import resize_to
from cnnx.data.sources import out_of_memory, process_slice
from cnnx.errors import CnnxError, ConfigError

# In-memory images are resized ahead (once) up to this size (float32 at the model's resolution).
PRE_RESIZE_BYTES = 256 * 2**20
# Threads preparing batches, as many batches ahead of the one in use (at least 2).
WORKERS = max(2, min(8, os.cpu_count() or 1))
T = TypeVar("T")


def presized(images: np.ndarray, pp: str, ctx: pp_lib.PPContext) -> np.ndarray:
    """The split's images as the batches gather them: resized once to the model's resolution
    when the pp string starts with a resize (`pp.resizes_first`; exactly what each batch
    would compute) and the result fits in `PRE_RESIZE_BYTES`, else as they are."""
    n, _, _, c = images.shape
    if not n or not pp_lib.resizes_first(pp) or n * ctx.image_size**2 * c * 4 > PRE_RESIZE_BYTES:
        return images
    return np.concatenate(
        [resize_to(images[i : i + 256], ctx.image_size) for i in range(0, n, 256)]
    )


def prefetch(
    fn: Callable[[T], dict], tasks: Iterable[T], workers: int = WORKERS, what: str = "batches"
) -> Iterator[dict]:
    """`fn(task)` for each task, in order, computed by `workers` threads up to `workers` batches
    ahead of the one taken (NumPy releases the GIL in its array work, so large batches use as
    many cores). An error in `fn` is raised here, at its batch (running out of memory as
    `OutOfMemory`, naming `what` was being prepared); closing or dropping the iterator stops
    the work."""
    with concurrent.futures.ThreadPoolExecutor(workers, "cnnx-in-memory-input") as pool:
        pending: collections.deque = collections.deque()

        def taken():
            try:
                return pending.popleft().result()
            except MemoryError as e:  # no fault of the data: the batch, pp or host is too big
                raise out_of_memory(f"preparing {what}", e) from None

        try:
            for task in tasks:
                pending.append(pool.submit(fn, task))
                if len(pending) > workers:
                    yield taken()
            while pending:
                yield taken()
        finally:
            for future in pending:
                future.cancel()


def _probe(fn, pp: str, key: str) -> dict:
    """`fn()`, a first batch; a pp string that cannot be applied to this data (a negative
    padding, a zero crop ratio...) becomes a `ConfigError` naming it."""
    try:
        return fn()
    except CnnxError:
        raise
    except MemoryError as e:  # the pp string may be at fault, but not as `cannot_apply` says
        raise out_of_memory(
            f"preparing a first example with --config.data.{key}={pp!r}", e
        ) from None
    except Exception as e:  # whatever the NumPy ops raised
        raise pp_lib.cannot_apply(pp, key, e) from None


class TrainBatches:
    """Endless training batches of a `TrainInput` (`spec`: the run's fields, its steps per
    epoch and epoch seeds) over an in-memory split."""

    def __init__(self, spec):
        self.spec = spec
        if spec.shuffle_buffer < 1:
            raise ConfigError(
                f"--config.data.shuffle_buffer={spec.shuffle_buffer}: the shuffle buffer "
                "holds at least one example."
            )
        images, self.labels = spec.source.arrays(spec.split)
        self.images = presized(images, spec.pp, spec.ctx)
        self.pp = pp_lib.build_batched(spec.pp, spec.ctx)
        first = _probe(lambda: self.batch(np.zeros(1, np.int64), 0), spec.pp, "train_pp")
        pp_lib.check_image_shape(first["image"].shape[1:], spec.ctx, spec.pp, "train_pp", False)

    def batch(self, index: np.ndarray, eseed: int) -> dict[str, np.ndarray]:
        """The examples at `index` (B,) of the split, each with the seed (eseed, index); an
        index past the split is a repeated copy (`repeated.stream`) of index % N."""
        seed = np.stack([np.full(len(index), eseed, np.int64), index], 1)
        index = index % self.spec.num_split
        f = self.pp({"image": self.images[index], "label": self.labels[index], "seed": seed})
        image = np.ascontiguousarray(f["image"], np.float32)
        # `index` is the example's position in the split (fast linear probes use it).
        return {"image": image, "label": f["label"], "index": index}

    def epoch(self, epoch: int, skip: int) -> Iterator[tuple[np.ndarray, int]]:
        """This process's batches of one epoch, from batch `skip` on, as (index, epoch seed)
        for `batch`: its rows of each global batch of the shuffled order (every process walks
        the same order)."""
        spec = self.spec
        n = spec.examples_per_reader
        eseed = spec.epoch_seed(epoch)
        order = tf_random.shuffle_order(n, min(spec.shuffle_buffer, n), eseed)
        order = repeated.stream(order, spec.repeats, spec.num_split)
        lo, b = spec.process_index * spec.local_batch, spec.global_batch
        for step in range(skip, spec.steps_per_epoch):
            rows = order[step * b : (step + 1) * b][repeated.spread(spec.repeats, b, step * b)]
            yield rows[lo : lo + spec.local_batch], eseed

    def iterate(self, epoch: int, skip: int) -> Iterator[dict[str, np.ndarray]]:
        """Batches from batch `skip` of `epoch` on, forever, prefetched."""

        def endless():
            e, k = epoch, skip
            while True:
                yield from self.epoch(e, k)
                e, k = e + 1, 0

        what = f"training batches of split {self.spec.split!r} of {self.spec.source.name}"
        return prefetch(lambda task: self.batch(*task), endless(), what=what)


class EvalBatches:
    """One pass over an `EvalInput`'s (`spec`) in-memory split: this process's share, padded
    to `num_batches` batches with masked rows (zeros, label 0, mask 0)."""

    def __init__(self, spec):
        self.spec = spec
        images, labels = spec.source.arrays(spec.split)
        mine = process_slice(spec.num_examples, spec.process_index, spec.process_count, False)
        self.images = presized(images[mine.start : mine.stop], spec.pp, spec.ctx)
        self.labels = labels[mine.start : mine.stop]
        self.pp = pp_lib.build_batched(spec.pp, spec.ctx)
        # The shape from the split's first example: a process's share may be empty.
        zero_seed = np.zeros((1, 2), np.int64)
        first = _probe(
            lambda: self.pp({"image": images[:1], "label": labels[:1], "seed": zero_seed}),
            spec.pp,
            "eval_pp",
        )
        self.shape = np.shape(first["image"])[1:]
        pp_lib.check_image_shape(self.shape, spec.ctx, spec.pp, "eval_pp", True)

    def batch(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Rows `rows` (B,) of this process's share; rows past its end are padding."""
        n = len(self.labels)
        real = rows < n
        if n == 0:
            image = np.zeros((len(rows), *self.shape), np.float32)
            label = np.zeros(len(rows), np.int32)
        else:
            index = np.minimum(rows, n - 1)
            seed = np.zeros((len(rows), 2), np.int64)
            f = self.pp({"image": self.images[index], "label": self.labels[index], "seed": seed})
            keep = real.reshape(-1, *[1] * len(self.shape))
            image = np.where(keep, np.asarray(f["image"], np.float32), np.float32(0.0))
            label = np.where(real, f["label"], 0).astype(np.int32)
        return {"image": image, "label": label, "mask": real.astype(np.float32)}

    def iterate(self) -> Iterator[dict[str, np.ndarray]]:
        """The pass's `num_batches` batches of `local_batch` rows, prefetched."""
        b = self.spec.local_batch
        rows = (np.arange(i * b, (i + 1) * b) for i in range(self.spec.num_batches))
        what = f"evaluation batches of split {self.spec.split!r} of {self.spec.source.name}"
        return prefetch(self.batch, rows, what=what)
