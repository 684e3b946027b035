"""Data sources by name: `digits`, `synthetic`, `folder:<path>`, `tfds:<name>`.

`get_source(data)` builds one from the config's `data` section: the part of `data.source`
before the first colon picks a constructor in `SOURCES` (registered with `@source(prefix)`;
`cnnx.data.folder` registers `folder`, `cnnx.data.tfds_source` registers `tfds`), which reads
the fields it needs (`data_dir` and `download` for TFDS, `on_corrupt` for folders); their
defaults live in the config schema (`cnnx.config_schema`) only.

A source turns a split into a `tf.data.Dataset` of raw examples for one process:
`{'image': uint8 HWC tensor or encoded JPEG/PNG bytes, 'label': int32}` in a fixed order
(shuffling happens in the pipeline, seeded, so data order is a pure function of the seed and
the epoch). In-memory sources (digits, synthetic: `ArraySource`) also give their arrays,
which the batched pipelines read without TensorFlow; TFDS and folder sources need it, and
say what to install when it is missing (`require_tensorflow`, when they are resolved).
Splits accept TFDS-style slices everywhere: `train[:90%]`, `test[100:200]`. Every source's
labels must lie in `[0, num_classes)` (`check_labels`), the one class count of a run.
"""

import dataclasses
import re
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from cnnx.errors import ConfigError, DataError, OutOfMemory
from cnnx.process_defaults import import_tensorflow

# What a user without TensorFlow installs to read TFDS datasets and image folders.


def require_tensorflow(what: str, datasets: bool = False):
    """TensorFlow (and with `datasets` TensorFlow Datasets), imported for a source that is read
    through tf.data (`cnnx.process_defaults.import_tensorflow`: kept off the accelerators).

    Args:
      what: the source, for the message (e.g. '--config.data.source=tfds:mnist').

    Returns:
      The `tensorflow` module.

    Raises:
      MissingDependency: one line naming the source and what to install, when either is
        missing.
    """
    return import_tensorflow(what, datasets=datasets)


def parse_split(split: str) -> tuple[str, slice]:
    """`'train[10%:50%]'` -> ('train', slice) in fractions or absolute indices."""
    m = re.fullmatch(r"\s*(\w+)\s*(?:\[\s*([-\d%]*)\s*:\s*([-\d%]*)\s*\])?\s*", split)
    if not m:
        raise ConfigError(f"Cannot parse split {split!r}; use e.g. 'train', 'train[:90%]'.")
    return m.group(1), (m.group(2) or "", m.group(3) or "")


def slice_indices(n: int, bounds: tuple[str, str]) -> range:
    """The example indices a slice of `parse_split` selects out of `n`, clipped to [0, n).

    Percentages round to the nearest example (TFDS's 'closest' rounding); negative bounds
    count from the end; a bound past the end is clipped (`test[:1000]` of 500 examples is the
    whole split), where TFDS would raise.
    """

    def resolve(b: str, default: int) -> int:
        if not b:
            return default
        if b.endswith("%"):
            return round(n * int(b[:-1]) / 100)
        v = int(b)
        return v + n if v < 0 else v

    return range(max(0, resolve(bounds[0], 0)), min(n, resolve(bounds[1], n)))


def process_slice(n: int, process_index: int, process_count: int, drop_remainder: bool) -> range:
    """The contiguous block of `n` examples owned by one process (as `tfds.even_splits`)."""
    if drop_remainder:
        per = n // process_count
        return range(process_index * per, (process_index + 1) * per)
    base, extra = divmod(n, process_count)
    start = process_index * base + min(process_index, extra)
    return range(start, start + base + (1 if process_index < extra else 0))


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Labels must index the classes: one outside [0, num_classes) would become an all-zero
    one-hot target (loss 0, silently never learnt or scored).

    Raises:
      DataError: naming the offending labels and where they came from.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        bad = np.unique(labels[(labels < 0) | (labels >= num_classes)])
        raise DataError(
            f"Labels {', '.join(map(str, bad[:10]))}{' ...' if len(bad) > 10 else ''} in "
            f"{where} are outside 0-{num_classes - 1} ({num_classes} classes). "
            + (
                "Negative labels usually mark unlabelled examples (some TFDS test splits): "
                "evaluate on a labelled split. "
                if lo < 0
                else ""
            )
            + "Fix the labels or the data's class count."
        )


@dataclasses.dataclass
class Source:
    """Base class: a named dataset with integer labels.

    `global_order`: the source can list every example cheaply on every process (in-memory
    arrays, file lists), so the training pipeline shuffles the whole split identically on all
    processes and each takes its rows of every global batch: the data order is then the same
    for any number of processes. TFDS sources read a per-process part of the files instead
    (each host reads 1/N of ImageNet), so their order depends on the process count.
    """

    name: str
    num_classes: int
    global_order = True
    # Whether the split's decoded images are arrays of one shape (`ArraySource.arrays`).
    in_memory = False
    # Whether reading or decoding an example can fail (files): the pipelines then catch
    # failures per example and report them through `record_unreadable`.
    can_fail = False

    def load(self, example: dict) -> dict:
        """Turns a listed example into {'image', 'label'} (e.g. reads the file); lazy so that
        only the examples a process keeps are read."""
        return example

    def describe(self, example: dict):
        """A string tensor naming the example in messages (a file's path)."""
        import tensorflow as tf

        del example
        return tf.constant(self.name)

    def record_unreadable(self, what: bytes, error: Exception | None = None) -> None:
        """Host side: the example `describe` names could not be read or preprocessed.

        `error`: what preparing that example raised when tried again on the host (None if it
        then worked); an out-of-memory is no fault of the example (`is_out_of_memory`).
        """

    def record_exhausted(self, what: list[bytes]) -> None:
        """Host side: an example and every stand-in for it were unreadable."""

    def check(self) -> None:
        """Called by the pipelines after each batch: raises or logs what loading found."""

    def num_examples(self, split: str) -> int:
        """Examples in `split` (slices such as `train[:90%]` included).

        Raises:
          ConfigError: the source has no such split.
        """
        raise NotImplementedError

    def dataset(
        self, split: str, *, process_index: int, process_count: int, drop_remainder: bool, seed: int
    ):
        """Process `process_index`'s contiguous share of `split` (of `process_count`; with
        `drop_remainder` every share has the same size), in a fixed order; `seed` only
        shuffles the order in which TFDS reads its files.

        Returns:
          A `tf.data.Dataset` of raw examples (see the module docstring).
        """
        raise NotImplementedError


def is_out_of_memory(error: BaseException | None) -> bool:
    """Whether `error` is the host running out of memory: a `MemoryError` (NumPy, Python) or
    TensorFlow's `ResourceExhaustedError` ('OOM when allocating tensor ...')."""
    if isinstance(error, MemoryError):
        return True
    tf = sys.modules.get("tensorflow")  # an error of TensorFlow's means it is imported
    errors = getattr(tf, "errors", None)
    return errors is not None and isinstance(error, errors.ResourceExhaustedError)


def out_of_memory(what: str, error: BaseException) -> OutOfMemory:
    """The error for an input pipeline that ran out of host memory while doing `what` (e.g.
    "preprocessing split 'train' of digits"): no fault of the data's files; says what to
    lower. `error`: the `MemoryError` or `ResourceExhaustedError` caught."""
    text = str(getattr(error, "message", error))
    said = re.search(r"(OOM when allocating|Unable to allocate)[^\n]*", text)
    detail = said.group(0) if said else (text.strip().splitlines() or [""])[0]
    detail = detail.split(" on /job:")[0][:200]  # TensorFlow's device suffix says nothing
    return OutOfMemory(
        f"Out of host memory while {what} ({type(error).__name__}: {detail}); no file is at "
        "fault. Lower what the input pipeline holds: a smaller --config.train.batch_size (or "
        "eval.batch_size), a smaller --config.data.shuffle_buffer, --config.data.cache=False, "
        "a pp string that makes smaller images (a large padding, size or a small crop_pct), "
        "or give the run more memory."
    )


@dataclasses.dataclass
class ArraySource(Source):
    """Examples held in memory as numpy arrays, one array pair per split.

    `in_memory`: the pipelines gather whole batches from `arrays` and preprocess them with
    batched ops (`cnnx.data.pp.build_batched`) when the pp string allows it.
    """

    in_memory = True

    images: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    labels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for split, labels in self.labels.items():
            check_labels(labels, self.num_classes, f"split {split!r} of {self.name}")

    def _indices(self, split: str) -> tuple[str, range]:
        base, bounds = parse_split(split)
        if base not in self.images:
            raise ConfigError(
                f"Dataset {self.name!r} has no split {base!r}; available: {sorted(self.images)}."
            )
        return base, slice_indices(len(self.images[base]), bounds)

    def num_examples(self, split: str) -> int:
        return len(self._indices(split)[1])

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The split's (images (N, H, W, C) uint8, labels (N,) int32), in the split's order:
        what `dataset` yields with one process, for pipelines that gather whole batches."""
        base, idx = self._indices(split)
        sel = np.asarray(idx, dtype=np.int64)
        return self.images[base][sel], self.labels[base][sel].astype(np.int32)

    @property
    def channels(self) -> int:
        """Channels of the stored images (1 for digits): the model input default."""
        return int(next(iter(self.images.values())).shape[-1])

    def dataset(self, split, *, process_index, process_count, drop_remainder, seed):
        import tensorflow as tf  # the per-example pipeline's; batched ones read `arrays`

        del seed  # fixed order; shuffled downstream
        base, idx = self._indices(split)
        mine = process_slice(len(idx), process_index, process_count, drop_remainder)
        sel = np.asarray(idx, dtype=np.int64)[mine.start : mine.stop]
        return tf.data.Dataset.from_tensor_slices(
            {"image": self.images[base][sel], "label": self.labels[base][sel].astype(np.int32)}
        )


DIGITS_TASKS = {
    "digit": np.arange(10),
    "parity": np.arange(10) % 2,
    "loop": np.array([1, 0, 0, 0, 1, 0, 1, 0, 1, 1]),
}


def digits_source(holdout: float = 0.2, seed: int = 0, task: str = "digit") -> ArraySource:
    """scikit-learn's bundled handwritten digits: 1,797 8×8 grey images of 10 classes.

    `task` relabels the same images for transfer experiments: 'digit' (10 classes), 'parity'
    (even / odd), 'loop' (digits drawn with a closed loop, 0 6 8 9 (and 4), vs the rest).

    Split deterministically (fixed permutation) into `train` (80%) and `test` (20%, 360
    images); `all` is every image. Pixel values 0..16 are scaled to uint8 0..255. The
    preprocessing resizes them to the model's resolution (32×32 for LeNet-5).
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int32)
    if task not in DIGITS_TASKS:
        raise ConfigError(f"Unknown digits task {task!r}; use one of {sorted(DIGITS_TASKS)}.")
    labels = DIGITS_TASKS[task][labels]
    order = np.random.RandomState(seed).permutation(len(images))
    n_test = round(len(images) * holdout)
    test, train = order[:n_test], order[n_test:]
    return ArraySource(
        name="digits" if task == "digit" else f"digits:{task}",
        num_classes=int(labels.max()) + 1,
        images={"train": images[train], "test": images[test], "all": images},
        labels={"train": labels[train], "test": labels[test], "all": labels},
    )


def synthetic_source(
    num_classes: int = 10,
    image_size: int = 32,
    channels: int = 3,
    num_train: int = 512,
    num_test: int = 128,
    seed: int = 0,
) -> ArraySource:
    """Random images with a learnable class signal (a class-specific colour and stripe), so
    smoke runs show a falling loss. Splits `train` and `test`."""
    rng = np.random.RandomState(seed)
    means = rng.uniform(40, 215, size=(num_classes, channels))
    images, labels = {}, {}
    for split, n in (("train", num_train), ("test", num_test)):
        y = rng.randint(0, num_classes, size=n)
        x = rng.normal(0, 30, size=(n, image_size, image_size, channels)) + means[y][:, None, None]
        rows = (np.arange(image_size)[None, :] * num_classes // image_size) == y[:, None]
        x[:, :, :, 0] += 60 * rows[:, None, :]
        images[split] = np.clip(x, 0, 255).astype(np.uint8)
        labels[split] = y.astype(np.int32)
    return ArraySource("synthetic", num_classes, images, labels)


# The prefix of `data.source` (before the first ':') -> constructor(rest, data section).
SOURCES: dict[str, Callable[[str, Any], Source]] = {}


def source(prefix: str):
    """Registers `constructor(arg, data) -> Source` for `data.source` = `prefix[:arg]`; it
    reads the fields it needs from `data`, the config's data section."""

    def wrap(fn):
        SOURCES[prefix] = fn
        return fn

    return wrap


@source("digits")
def _digits(arg: str, data) -> ArraySource:
    del data
    return digits_source(task=arg or "digit")


@source("synthetic")
def _synthetic(arg: str, data) -> ArraySource:
    if arg:
        raise ConfigError(f"--config.data.source=synthetic:{arg}: synthetic takes no argument.")
    sizes = {k: data[k] for k in ("num_classes", "image_size") if data.get(k) is not None}
    return synthetic_source(**sizes)


def get_source(data, **resolved) -> Source:
    """Builds the source that the config's `data` section names in `data.source`.

    Args:
      data: the `data` section (a ConfigDict or a mapping with its fields: `source` and the
        fields the source kind reads: `data_dir`, `download`, `on_corrupt`, `num_classes`,
        `image_size`).
      **resolved: values the run decided for fields the section leaves unset (None): the
        model's resolution for `image_size`, the head's size for `num_classes` (generated
        data takes them).

    Raises:
      ConfigError: an unknown source kind (naming the known ones).
      DataError, ConfigError: from the source's constructor (a missing folder, an
        unprepared TFDS dataset...).
    """
    fields = dict(data.items())
    fields.update({k: v for k, v in resolved.items() if fields.get(k) is None})
    spec = fields["source"]
    kind, _, arg = spec.partition(":")
    if kind not in SOURCES:
        raise ConfigError(
            f"Unknown data source {spec!r}; use 'digits' ('digits:parity', 'digits:loop'), "
            "'synthetic', 'folder:<path>' or 'tfds:<name>' (e.g. tfds:imagenet2012)."
        )
    return SOURCES[kind](arg, fields)
