"""tf.data pipelines, one example at a time: TFDS and folder sources, and in-memory sources
whose pp string has an op without a batched form (inception_crop, RandAugment...).

`TrainPipeline` and `EvalPipeline` give the batches of a `cnnx.data.pipeline.TrainInput` /
`EvalInput` (their `spec`: the run's fields, steps per epoch, the epoch's seed); see that
module for the data order they share with the in-memory pipelines. Examples are read,
decoded and preprocessed in parallel (`num_parallel_calls`, deterministic order), batched
and prefetched by tf.data; an unreadable file of a folder is replaced by a stand-in (training)
or masked out (evaluation), so every epoch keeps its length and order.
"""

import re

import tensorflow as tf

from cnnx.data import pp as pp_lib
from cnnx.data.sources import Source, is_out_of_memory, out_of_memory
from cnnx.errors import DataError


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
    non-image, a decoder's refusal, but also the host out of memory) yields nothing
    (`ignore_errors` on a one-element dataset) and the next candidate is tried. The failure
    of the example itself is reported to the source (`record_unreadable`: named, counted,
    `on_corrupt`; with the error the example raises when prepared again on the host, which
    tells an out-of-memory from a bad file); `fallback(index, example)`
    gives the features when every candidate failed, after `record_exhausted` (training: an
    error; evaluation, which has no stand-ins: a masked-out example)."""

    def noted(fn, *args):
        """Runs a host-side report before the features are made."""
        done = tf.py_function(lambda *a: (fn(*(x.numpy() for x in a)), True)[1], args, tf.bool)
        with tf.control_dependencies([done]):
            return tf.identity(done)

    def report(index, *flat, structure):
        """Host side: the example failed in the pipeline; prepared again here, the error it
        raises tells the source whether the file is at fault (an out-of-memory is not)."""
        example = tf.nest.pack_sequence_as(structure, list(flat))
        try:
            prepare(index, source.load(example))
            error = None
        except Exception as e:  # whatever failed it in the pipeline
            error = e
        source.record_unreadable(source.describe(example).numpy(), error)

    def unreadable(index, example):
        """A dependency that reports `example`'s failure (see `report`)."""
        flat = tf.nest.flatten(example)
        done = tf.py_function(
            lambda i, *f: (report(i, *f, structure=example), True)[1], [index, *flat], tf.bool
        )
        with tf.control_dependencies([done]):
            return tf.identity(done)

    def one(index, example, stand_ins):
        def candidate(i, e, failed=None):
            if failed is not None:
                with tf.control_dependencies([unreadable(*failed)]):
                    i = tf.identity(i)
            return prepare(i, source.load(e))

        first = source.describe(example)
        out = tf.data.Dataset.from_tensors((index, example)).map(candidate).ignore_errors()
        for n, (i, e) in enumerate(stand_ins):
            failed = (index, example) if n == 0 else None
            more = tf.data.Dataset.from_tensors((i, e))
            more = more.map(lambda i, e, failed=failed: candidate(i, e, failed))
            out = out.concatenate(more.ignore_errors())

        def last_resort(i, e):
            names = tf.stack([first] + [source.describe(e) for _, e in stand_ins])
            if stand_ins:
                done = noted(lambda n: source.record_exhausted(list(n)), names)
            else:
                done = unreadable(i, e)
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
        raise pp_lib.cannot_apply(pp, key, e) from None


def _check_images(image: tf.TensorSpec, ctx: pp_lib.PPContext, pp: str, key: str, views: bool):
    """`pp_lib.check_image_shape` of a traced example's image."""
    dims = image.shape.as_list() if image.shape.rank is not None else None
    pp_lib.check_image_shape(dims, ctx, pp, key, views)


def _numpy_batches(ds: tf.data.Dataset, source: Source, split: str):
    """The dataset's batches as NumPy; a read or decode error becomes a `DataError`, the host
    running out of memory an `OutOfMemory` (no file is at fault then)."""
    it = ds.as_numpy_iterator()
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except tf.errors.OpError as e:
            error = e
        else:
            yield batch
            continue
        source.check()  # what the source found on the host names more (a file, an OOM)
        if is_out_of_memory(error):
            raise out_of_memory(f"preparing split {split!r} of {source.name}", error)
        if isinstance(error, _FILE_ERRORS):
            cause = "A file that cannot be read is the cause; check (or remove) it."
        else:
            cause = (
                "A file that cannot be decoded, or an example the pp string cannot handle, "
                "is the usual cause."
            )
        raise DataError(
            f"Reading split {split!r} of {source.name} failed: {_reason(error)}. {cause}"
        )


# TensorFlow's errors that only a file causes (the others may as well be the pp string's).
_FILE_ERRORS = (tf.errors.DataLossError, tf.errors.NotFoundError, tf.errors.PermissionDeniedError)


def _reason(error: tf.errors.OpError) -> str:
    """The line of a tf.data error that says what failed (not the node or iterator names)."""
    lines = [re.sub(r"^(\{\{[^}]*\}\}\s*)+", "", x).strip() for x in error.message.splitlines()]
    lines = [x for x in lines if x and not x.startswith("[[")]
    told = [x for x in lines if not x.startswith("Error in user-defined function")]
    return (told or lines or [type(error).__name__])[0][:300]


def _spread(repeats: int, batch: int, step):
    """`repeated.spread(repeats, batch, step · batch)` in TensorFlow (`step` a tensor)."""
    positions = (tf.cast(step, tf.int64) * batch + tf.range(batch, dtype=tf.int64)) % repeats
    return tf.argsort(positions, stable=True)


class TrainPipeline:
    """Endless training batches of a `TrainInput` (`spec`), preprocessed per example."""

    def __init__(self, spec):
        self.spec = spec
        self._pp = pp_lib.build(spec.pp, spec.ctx)
        self._raw_cache = None
        # Traced once (a tf.function) and reused by every epoch's pipeline, with the epoch's
        # seed as an argument: building a pipeline does not re-trace heavy ops (RandAugment).
        self._prepare_example = tf.function(self._prepare_body)
        probe = self._raw(0).enumerate().take(1)
        if spec.source.can_fail:
            probe = _with_stand_ins(probe)
        probe = self._prepared(probe, 0)
        _check_images(probe.element_spec["image"], spec.ctx, spec.pp, "train_pp", views=False)

    def _prepare_body(self, index, example, eseed):
        """Features of one loaded example ({'image', 'label'})."""
        seed = tf.stack([eseed, index])
        features = self._pp({**example, "seed": seed})
        # `index` is the example's position in the split (fast linear probes use it); past
        # the split, a repeated copy's seed index (`repeated.stream`).
        image = tf.cast(features["image"], tf.float32)
        index = index % self.spec.num_split
        return {"image": image, "label": features["label"], "index": index}

    def _prepared(self, ds: tf.data.Dataset, eseed: int) -> tf.data.Dataset:
        """(index, example[, stand_ins]) elements -> features; an unreadable example of a
        file source is replaced by its first readable stand-in, with that one's label."""
        spec, source = self.spec, self.spec.source
        eseed = tf.constant(eseed, tf.int64)

        def prepare(index, loaded):
            return self._prepare_example(index, loaded, eseed)

        if not source.can_fail:
            return _mapped(ds, lambda i, e: prepare(i, source.load(e)), spec.pp, "train_pp")

        def fallback(index, example):  # only after record_exhausted, which stops the run
            s, c = spec.ctx.image_size, spec.ctx.channels
            zeros = tf.zeros([s, s, c], tf.uint8)
            return prepare(index, {"image": zeros, "label": example["label"]})

        return _traced(lambda: _first_readable(ds, source, prepare, fallback), spec.pp, "train_pp")

    def _raw(self, epoch: int) -> tf.data.Dataset:
        spec = self.spec
        ds = spec.source.dataset(
            spec.split,
            process_index=0 if spec.global_order else spec.process_index,
            process_count=1 if spec.global_order else spec.process_count,
            drop_remainder=True,
            seed=spec.epoch_seed(epoch),
        )
        if spec.cache:
            if self._raw_cache is None:
                self._raw_cache = ds.cache()
            ds = self._raw_cache
        return ds

    def epoch_dataset(self, epoch: int, skip_batches: int = 0) -> tf.data.Dataset:
        """The batches of one epoch (per process), after skipping `skip_batches`."""
        spec = self.spec
        eseed = spec.epoch_seed(epoch)
        ds = self._raw(epoch).enumerate()
        ds = ds.shuffle(
            min(spec.shuffle_buffer, spec.examples_per_reader),
            seed=eseed,
            reshuffle_each_iteration=False,
        )
        if spec.source.can_fail:  # before the skip: stand-ins are the same on resume
            ds = _with_stand_ins(ds)
        k = spec.repeats
        if k > 1:  # `repeated.stream`: the first ⌈n/k⌉ of the order, k copies each, cut to n
            ds = ds.take(-(-spec.examples_per_reader // k)).flat_map(self._copies)
            ds = ds.take(spec.examples_per_reader)
        if spec.global_order:
            # Every process walks the same global order and keeps its rows of each batch.
            ds = ds.skip(skip_batches * spec.global_batch)
            lo = spec.process_index * spec.local_batch
            ds = ds.batch(spec.global_batch, drop_remainder=True).enumerate(skip_batches)

            def mine(step, x):  # `repeated.spread` of the step's batch, then this process's
                rows = _spread(k, spec.global_batch, step)[lo : lo + spec.local_batch]
                return tf.nest.map_structure(lambda t: tf.gather(t, rows), x)

            ds = ds.map(mine).unbatch()
        else:
            ds = ds.skip(skip_batches * spec.local_batch)

        ds = self._prepared(ds, eseed)
        ds = ds.batch(spec.local_batch, drop_remainder=True)
        if k > 1 and not spec.global_order:  # `repeated.spread` over this reader's batch
            b = spec.local_batch
            ds = ds.enumerate(skip_batches).map(
                lambda step, f: {key: tf.gather(v, _spread(k, b, step)) for key, v in f.items()}
            )
        ds = ds.take(spec.steps_per_epoch - skip_batches)
        return ds.prefetch(tf.data.AUTOTUNE)

    def _copies(self, index, *rest):
        """An element's `repeats` copies, copy j with the seed index index + j·N."""
        copies = tf.data.Dataset.range(self.spec.repeats)
        n = tf.constant(self.spec.num_split, tf.int64)
        return copies.map(lambda j: (index + j * n, *rest))

    def iterate(self, epoch: int, skip: int):
        """NumPy batches from batch `skip` of `epoch` on, forever."""
        while True:
            yield from _numpy_batches(
                self.epoch_dataset(epoch, skip), self.spec.source, self.spec.split
            )
            epoch, skip = epoch + 1, 0


class EvalPipeline:
    """One padded and masked pass over an `EvalInput`'s (`spec`) split, per example."""

    def __init__(self, spec):
        self.spec = spec
        self._pp = pp_lib.build(spec.pp, spec.ctx)
        self._prepare = tf.function(self._prepare_body)  # traced once, for every pass
        probe = self._prepared(self._dataset().take(1))
        _check_images(probe.element_spec["image"], spec.ctx, spec.pp, "eval_pp", views=True)

    def _dataset(self) -> tf.data.Dataset:
        spec = self.spec
        return spec.source.dataset(
            spec.split,
            process_index=spec.process_index,
            process_count=spec.process_count,
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

    def _prepared(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        """Examples -> features with a mask: 0 for padding and for unreadable files (skipped:
        they do not count)."""
        spec, source = self.spec, self.spec.source
        one, zero = tf.constant(1.0), tf.constant(0.0)
        if not source.can_fail:
            return _mapped(ds, lambda e: self._prepare(source.load(e), one), spec.pp, "eval_pp")

        def fallback(index, example):
            del index
            s, c = spec.ctx.image_size, spec.ctx.channels
            zeros = tf.zeros([s, s, c], tf.uint8)
            return self._prepare({"image": zeros, "label": example["label"]}, zero)

        ds = ds.map(lambda e: (tf.constant(0, tf.int64), e, ()))
        return _traced(
            lambda: _first_readable(
                ds, source, lambda i, loaded: self._prepare(loaded, one), fallback
            ),
            spec.pp,
            "eval_pp",
        )

    def iterate(self):
        """This process's `num_batches` NumPy batches of `local_batch` examples, padded."""
        spec = self.spec
        ds = self._prepared(self._dataset())
        shape = ds.element_spec["image"].shape
        # Test-time view ops give (V, S, S, C) per example; the padding matches whatever shape.
        shape = (
            shape.as_list()
            if shape.is_fully_defined()
            else [spec.ctx.image_size, spec.ctx.image_size, shape[-1]]
        )
        pad = tf.data.Dataset.from_tensors(
            {
                "image": tf.zeros(shape, tf.float32),
                # (K,) label sets (ImageNet-ReaL) pad with empty sets.
                "label": tf.zeros(ds.element_spec["label"].shape, tf.int32),
                "mask": tf.constant(0.0, tf.float32),
            }
        ).repeat()
        total = spec.num_batches * spec.local_batch
        ds = ds.concatenate(pad).take(total).batch(spec.local_batch, drop_remainder=True)
        return _numpy_batches(ds.prefetch(tf.data.AUTOTUNE), spec.source, spec.split)
