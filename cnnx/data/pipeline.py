"""tf.data input pipelines that feed global `jax.Array`s sharded over the mesh.

Training: the split is shuffled with a seed derived from (seed, epoch) and each example is
augmented with a stateless seed derived from (seed, epoch, example index); batches drop the
remainder. The data order is therefore a pure function of (seed, epoch): resuming at step s
rebuilds epoch s // steps_per_epoch and skips the batches already seen, giving exactly the
batches an uninterrupted run would have seen. Sources that can list the whole split cheaply
(digits, synthetic, folders) are shuffled globally and each process keeps its rows of every
global batch, so 1 process × 8 devices and 2 processes × 4 devices see identical batches;
TFDS sources are read per process (`tfds.split_for_jax_process`), each host reading 1/N of
the files.

In-memory sources (digits, synthetic) whose pp string has batched forms for all its ops
(`cnnx.data.pp.build_batched`: resize, resize_crop, random_crop, flip, normalize) skip
tf.data's per-example work: the pipeline shuffles example indices, batches them, and gathers
and preprocesses each batch at once. Each example gets exactly the images and random draws of
the per-example path, so results do not depend on which path ran.

Evaluation: every example counts exactly once. Each process pads its shard to the same number
of batches with masked examples (mask 0), so all processes run the same number of steps.
"""

import dataclasses
import math
import re
from collections.abc import Iterator

import jax
import numpy as np
import tensorflow as tf

from cnnx.data import pp as pp_lib
from cnnx.data.sources import Source, check_labels, process_slice
from cnnx.errors import ConfigError, DataError


def _checked(batches, source: Source, split: str) -> Iterator[dict[str, np.ndarray]]:
    """Yields numpy batches; a read or decode error becomes a `DataError`, and after each
    batch the source reports what loading found (corrupt files: logged, or an error). Labels
    are checked against the source's class count (the model's; see `decide_num_classes`) on
    the host, where it costs nothing: TFDS and folder labels are only seen here."""
    it = iter(batches)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except tf.errors.OpError as e:
            first = e.message.strip().splitlines()[0][:300]
            raise DataError(
                f"Reading split {split!r} of {source.name} failed: {first}. A file that "
                "cannot be read or decoded is the usual cause; check (or remove) it."
            ) from None
        source.check()
        check_labels(batch["label"], source.num_classes, f"split {split!r} of {source.name}")
        yield batch


def _mapped(ds: tf.data.Dataset, fn, pp: str, key: str) -> tf.data.Dataset:
    """`ds.map(fn)` in parallel; see `_traced`."""
    return _traced(
        lambda: ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True), pp, key
    )


# Stand-ins per training example of a source whose files can fail: the next examples of the
# epoch's order. All of them unreadable too (a broken folder) stops the run.
STAND_INS = 2


def _with_stand_ins(ds: tf.data.Dataset, k: int = STAND_INS) -> tf.data.Dataset:
    """(index, example) -> (index, example, ((index, example) of the next k in the order)),
    wrapping around. A pure function of the order, so a resumed run picks the same ones."""
    shifted = [ds.skip(j).concatenate(ds.take(j)) for j in range(1, k + 1)]
    return tf.data.Dataset.zip((ds, *shifted)).map(lambda first, *rest: (*first, tuple(rest)))


def _first_readable(ds, source: Source, prepare, fallback) -> tf.data.Dataset:
    """Prepares each element from the first of its candidates that can be read, decoded and
    preprocessed, without dropping any: every epoch keeps its length and order.

    Each element is (index, example, stand_ins). `prepare(index, loaded_example)` gives the
    features of a candidate; a failing one (any TensorFlow error: a truncated file, a
    non-image, a decoder's refusal) yields nothing (`ignore_errors` on a one-element dataset)
    and the next candidate is tried. The failure of the example itself is reported to the
    source (`record_unreadable`: named, counted, `on_corrupt`); `fallback(index, example)`
    gives the features when every candidate failed, after `record_exhausted` (training: an
    error; evaluation, which has no stand-ins: a masked-out example)."""

    def noted(fn, *args):
        """Runs a host-side report before the features are made."""
        done = tf.py_function(lambda *a: (fn(*(x.numpy() for x in a)), True)[1], args, tf.bool)
        with tf.control_dependencies([done]):
            return tf.identity(done)

    def one(index, example, stand_ins):
        def candidate(i, e, note=None):
            if note is not None:
                with tf.control_dependencies([noted(source.record_unreadable, note)]):
                    i = tf.identity(i)
            return prepare(i, source.load(e))

        first = source.describe(example)
        out = tf.data.Dataset.from_tensors((index, example)).map(candidate).ignore_errors()
        for n, (i, e) in enumerate(stand_ins):
            note = first if n == 0 else None
            more = tf.data.Dataset.from_tensors((i, e))
            more = more.map(lambda i, e, note=note: candidate(i, e, note))
            out = out.concatenate(more.ignore_errors())

        def last_resort(i, e):
            names = tf.stack([first] + [source.describe(e) for _, e in stand_ins])
            if stand_ins:
                done = noted(lambda n: source.record_exhausted(list(n)), names)
            else:
                done = noted(source.record_unreadable, first)
            with tf.control_dependencies([done]):
                return fallback(tf.identity(i), e)

        rest = tf.data.Dataset.from_tensors((index, example)).map(last_resort)
        return out.concatenate(rest).take(1)

    return ds.interleave(
        one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True, cycle_length=16
    )


def _traced(build, pp: str, key: str) -> tf.data.Dataset:
    """`build()` (a dataset transformation that traces the preprocessing); a preprocessing
    string that cannot be built for this data (a negative padding, a zero crop ratio...)
    becomes a `ConfigError` naming it."""
    try:
        return build()
    except Exception as e:  # whatever TensorFlow raised while tracing the ops
        lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
        detail = lines[-1][:300] if lines else ""
        if not re.match(r"\w+(Error|Exception)\b", detail):
            detail = f"{type(e).__name__}: {detail}"
        raise ConfigError(
            f"--config.data.{key}={pp!r} cannot be applied to this data: {detail}"
        ) from None


def _check_images(
    spec: tf.TensorSpec, ctx: pp_lib.PPContext, pp: str, key: str, views: bool, batched=False
):
    """The preprocessed images must be what the model was built for: S x S x C (or V views of
    them at evaluation), known when the pipeline is built, before anything compiles. A
    `batched` spec has a leading batch axis."""
    want = [ctx.image_size, ctx.image_size, ctx.channels]
    dims = spec.shape.as_list() if spec.shape.rank is not None else None
    dims = dims[1:] if dims and batched else dims
    if dims is None or len(dims) not in ((3, 4) if views else (3,)) or dims[-3:] != want:
        raise ConfigError(
            f"--config.data.{key}={pp!r} gives images of shape {spec.shape}, but the model takes "
            f"{ctx.image_size}x{ctx.image_size}x{ctx.channels}: include an op that sets the size "
            "(resize, resize_crop, random_crop, inception_crop)."
        )


# In-memory images are resized ahead (once) up to this size (float32 at the model's resolution).
PRE_RESIZE_BYTES = 256 * 2**20


def _in_memory(images: np.ndarray, pp: str, ctx: pp_lib.PPContext) -> tf.Tensor:
    """The split's images as the batched pipeline gathers them: resized once to the model's
    resolution when the pp string starts with a resize (`pp.resizes_first`; exactly what each
    batch would compute) and the result fits in `PRE_RESIZE_BYTES`, else as they are."""
    n, _, _, c = images.shape
    if not pp_lib.resizes_first(pp) or n * ctx.image_size**2 * c * 4 > PRE_RESIZE_BYTES:
        return tf.constant(images)
    chunks = [
        pp_lib.resize_batch_to(tf.constant(images[i : i + 256]), ctx.image_size)
        for i in range(0, n, 256)
    ]
    return tf.concat(chunks, 0) if chunks else tf.constant(images)


# Epochs of in-memory data chained into one dataset (its prefetch crosses their boundaries).
BATCHED_EPOCHS = 100


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] % (2**31 - 1))


@dataclasses.dataclass
class TrainInput:
    """Endless training batches starting at a given step."""

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
        self._pp = pp_lib.build(self.pp, self.ctx)
        self._raw_cache = None
        # In memory with batched ops: batches are gathered and preprocessed whole (see the
        # module docstring).
        self.batched = self.source.in_memory and self.global_order and pp_lib.has_batched(self.pp)
        if self.batched:
            images, labels = self.source.arrays(self.split)
            self._images, self._labels = _in_memory(images, self.pp, self.ctx), tf.constant(labels)
            self._pp_batch = pp_lib.build_batched(self.pp, self.ctx)
            self._prepare_batch = tf.function(self._prepare_batch_body)
            zero = tf.constant(0, tf.int64)
            first = tf.data.Dataset.range(1).batch(1)
            probe = _traced(
                lambda: first.map(lambda i: self._prepare_batch(i, zero)),
                self.pp,
                "train_pp",
            )
            _check_images(
                probe.element_spec["image"], self.ctx, self.pp, "train_pp", False, batched=True
            )
            return
        # Traced once (a tf.function) and reused by every epoch's pipeline, with the epoch's
        # seed as an argument: building a pipeline does not re-trace heavy ops (RandAugment).
        self._prepare_example = tf.function(self._prepare_body)
        probe = self._raw(0).enumerate().take(1)
        if self.source.can_fail:
            probe = _with_stand_ins(probe)
        probe = self._prepared(probe, 0)
        _check_images(probe.element_spec["image"], self.ctx, self.pp, "train_pp", views=False)

    def _prepare_body(self, index, example, eseed):
        """Features of one loaded example ({'image', 'label'})."""
        seed = tf.stack([eseed, index])
        features = self._pp({**example, "seed": seed})
        # `index` is the example's position in the split (fast linear probes use it).
        image = tf.cast(features["image"], tf.float32)
        return {"image": image, "label": features["label"], "index": index}

    def _prepare_batch_body(self, index, eseed):
        """Features of the examples at `index` (B,) of an in-memory split, preprocessed as a
        batch; each gets the seed (eseed, index) of `_prepare_body`."""
        eseed = tf.cast(eseed, tf.int64)
        seed = tf.stack([tf.fill(tf.shape(index), eseed), index], axis=1)
        features = self._pp_batch(
            {
                "image": tf.gather(self._images, index),
                "label": tf.gather(self._labels, index),
                "seed": seed,
            }
        )
        image = tf.cast(features["image"], tf.float32)
        return {"image": image, "label": features["label"], "index": index}

    def _batched_epochs(self, epoch: int, skip_batches: int, count: int) -> tf.data.Dataset:
        """Epochs `epoch`..`epoch + count - 1` for in-memory sources, as one dataset (its
        prefetch runs across epoch boundaries: no pipeline is rebuilt at each epoch), after
        skipping `skip_batches` of the first: each epoch the same shuffle of the same indices
        as `epoch_dataset` (a shuffle's order depends only on its seed, buffer and length),
        batched, then each batch gathered and preprocessed whole."""
        n = self.examples_per_reader
        buffer = min(self.shuffle_buffer, n)
        lo = self.process_index * self.local_batch
        seeds = [_epoch_seed(self.seed, e) for e in range(epoch, epoch + count)]
        skips = [skip_batches] + [0] * (count - 1)

        def one_epoch(eseed, skip):
            ds = tf.data.Dataset.range(n)
            ds = ds.shuffle(buffer, seed=eseed, reshuffle_each_iteration=False)
            ds = ds.skip(skip * self.global_batch)
            ds = ds.batch(self.global_batch, drop_remainder=True)
            ds = ds.take(self.steps_per_epoch - skip)
            return ds.map(lambda index: (index[lo : lo + self.local_batch], eseed))

        skips = tf.constant(skips, tf.int64)
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(seeds, tf.int64), skips))
        ds = ds.flat_map(one_epoch).map(self._prepare_batch)
        return ds.prefetch(tf.data.AUTOTUNE)

    def _prepared(self, ds: tf.data.Dataset, eseed: int) -> tf.data.Dataset:
        """(index, example[, stand_ins]) elements -> features; an unreadable example of a
        file source is replaced by its first readable stand-in, with that one's label."""
        eseed = tf.constant(eseed, tf.int64)

        def prepare(index, loaded):
            return self._prepare_example(index, loaded, eseed)

        if not self.source.can_fail:
            return _mapped(ds, lambda i, e: prepare(i, self.source.load(e)), self.pp, "train_pp")

        def fallback(index, example):  # only after record_exhausted, which stops the run
            s, c = self.ctx.image_size, self.ctx.channels
            zeros = tf.zeros([s, s, c], tf.uint8)
            return prepare(index, {"image": zeros, "label": example["label"]})

        return _traced(
            lambda: _first_readable(ds, self.source, prepare, fallback), self.pp, "train_pp"
        )

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
        if self.batched:
            return self._batched_epochs(epoch, skip_batches, 1)
        ds = self._raw(epoch).enumerate()
        ds = ds.shuffle(
            min(self.shuffle_buffer, self.examples_per_reader),
            seed=eseed,
            reshuffle_each_iteration=False,
        )
        if self.source.can_fail:  # before the skip: stand-ins are the same on resume
            ds = _with_stand_ins(ds)
        if self.global_order:
            # Every process walks the same global order and keeps its rows of each batch.
            ds = ds.skip(skip_batches * self.global_batch)
            lo = self.process_index * self.local_batch
            ds = ds.batch(self.global_batch, drop_remainder=True)
            rows = slice(lo, lo + self.local_batch)
            ds = ds.map(lambda *x: tf.nest.map_structure(lambda t: t[rows], x))
            ds = ds.unbatch()
        else:
            ds = ds.skip(skip_batches * self.local_batch)

        ds = self._prepared(ds, eseed)
        ds = ds.batch(self.local_batch, drop_remainder=True)
        ds = ds.take(self.steps_per_epoch - skip_batches)
        return ds.prefetch(tf.data.AUTOTUNE)

    def iterate(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Local numpy batches from `start_step` on, forever."""
        epoch, skip = divmod(start_step, self.steps_per_epoch)
        while self.batched:
            ds = self._batched_epochs(epoch, skip, BATCHED_EPOCHS)
            yield from _checked(ds.as_numpy_iterator(), self.source, self.split)
            epoch, skip = epoch + BATCHED_EPOCHS, 0
        while True:
            ds = self.epoch_dataset(epoch, skip)
            yield from _checked(ds.as_numpy_iterator(), self.source, self.split)
            epoch, skip = epoch + 1, 0


@dataclasses.dataclass
class EvalInput:
    """One pass over an evaluation split, padded and masked to whole global batches."""

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
        self._pp = pp_lib.build(self.pp, self.ctx)
        # In memory with batched ops: batches gathered and preprocessed whole (a process
        # whose share is empty, with fewer examples than processes, pads per example).
        mine = process_slice(self.num_examples, self.process_index, self.process_count, False)
        self.batched = self.source.in_memory and pp_lib.has_batched(self.pp) and len(mine) > 0
        if self.batched:
            images, labels = self.source.arrays(self.split)
            self._images = _in_memory(images[mine.start : mine.stop], self.pp, self.ctx)
            self._labels = tf.constant(labels[mine.start : mine.stop])
            self._pp_batch = pp_lib.build_batched(self.pp, self.ctx)
            self._prepare_batch = tf.function(self._prepare_batch_body)
            probe = _traced(
                lambda: tf.data.Dataset.range(1).batch(1).map(self._prepare_batch),
                self.pp,
                "eval_pp",
            )
            _check_images(
                probe.element_spec["image"], self.ctx, self.pp, "eval_pp", True, batched=True
            )
            return
        self._prepare = tf.function(self._prepare_body)  # traced once, for every pass
        probe = self._prepared(self._dataset().take(1))
        _check_images(probe.element_spec["image"], self.ctx, self.pp, "eval_pp", views=True)

    def _dataset(self) -> tf.data.Dataset:
        return self.source.dataset(
            self.split,
            process_index=self.process_index,
            process_count=self.process_count,
            drop_remainder=False,
            seed=0,
        )

    def _prepare_body(self, loaded, mask):
        features = self._pp({**loaded, "seed": tf.constant([0, 0], tf.int64)})
        return {
            "image": tf.cast(features["image"], tf.float32),
            "label": features["label"],
            "mask": mask,
        }

    def _prepare_batch_body(self, index):
        """Features of rows `index` (B,) of this process's in-memory share, preprocessed as a
        batch; rows past its end are padding (zeros, label 0, mask 0), as in `iterate`."""
        n = tf.shape(self._labels, out_type=tf.int64)[0]
        real = index < n
        index = tf.minimum(index, n - 1)
        features = self._pp_batch(
            {
                "image": tf.gather(self._images, index),
                "label": tf.gather(self._labels, index),
                "seed": tf.zeros([tf.shape(index)[0], 2], tf.int64),
            }
        )
        image = tf.cast(features["image"], tf.float32)
        rows = tf.reshape(real, [-1] + [1] * (len(image.shape) - 1))
        return {
            "image": tf.where(rows, image, tf.zeros_like(image)),
            "label": tf.where(real, features["label"], tf.zeros_like(features["label"])),
            "mask": tf.cast(real, tf.float32),
        }

    def _prepared(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        """Examples -> features with a mask: 0 for padding and for unreadable files (skipped:
        they do not count)."""
        one, zero = tf.constant(1.0), tf.constant(0.0)
        if not self.source.can_fail:
            return _mapped(
                ds, lambda e: self._prepare(self.source.load(e), one), self.pp, "eval_pp"
            )

        def fallback(index, example):
            del index
            s, c = self.ctx.image_size, self.ctx.channels
            zeros = tf.zeros([s, s, c], tf.uint8)
            return self._prepare({"image": zeros, "label": example["label"]}, zero)

        ds = ds.map(lambda e: (tf.constant(0, tf.int64), e, ()))
        return _traced(
            lambda: _first_readable(
                ds, self.source, lambda i, loaded: self._prepare(loaded, one), fallback
            ),
            self.pp,
            "eval_pp",
        )

    def check_count(self, n: float) -> None:
        """Asserts that a pass counted every example once (skipped corrupt files excepted)."""
        if n == 0:
            raise DataError(f"No readable example in split {self.split!r} of {self.source.name}.")
        if n != self.num_examples and not getattr(self.source, "corrupt", None):
            raise AssertionError(f"evaluated {n} examples, expected {self.num_examples}")

    def iterate(self) -> Iterator[dict[str, np.ndarray]]:
        """This process's `num_batches` batches of `local_batch` examples, padded (mask 0)."""
        if self.batched:
            total = self.num_batches * self.local_batch
            ds = tf.data.Dataset.range(total).batch(self.local_batch).map(self._prepare_batch)
            it = ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
            return _checked(it, self.source, self.split)
        ds = self._prepared(self._dataset())
        spec = ds.element_spec["image"].shape
        # Test-time view ops give (V, S, S, C) per example; the padding matches whatever shape.
        shape = (
            spec.as_list()
            if spec.is_fully_defined()
            else [self.ctx.image_size, self.ctx.image_size, spec[-1]]
        )
        pad = tf.data.Dataset.from_tensors(
            {
                "image": tf.zeros(shape, tf.float32),
                "label": tf.constant(0, tf.int32),
                "mask": tf.constant(0.0, tf.float32),
            }
        ).repeat()
        total = self.num_batches * self.local_batch
        ds = ds.concatenate(pad).take(total).batch(self.local_batch, drop_remainder=True)
        return _checked(ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator(), self.source, self.split)


def to_global(batch: dict[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict:
    """Assembles per-process numpy batches into global arrays sharded over the batch axis."""
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
    }
