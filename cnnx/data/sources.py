"""Data sources by name: `digits`, `synthetic`, `folder:<path>`, `tfds:<name>`.

A source turns a split into a `tf.data.Dataset` of raw examples for one process:
`{'image': uint8 HWC tensor or encoded JPEG/PNG bytes, 'label': int32}` in a fixed order
(shuffling happens in the pipeline, seeded, so data order is a pure function of the seed and
the epoch). Splits accept TFDS-style slices everywhere: `train[:90%]`, `test[100:200]`.
"""

import dataclasses
import os
import re
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from cnnx.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def parse_split(split: str) -> tuple[str, slice]:
    """`'train[10%:50%]'` -> ('train', slice) in fractions or absolute indices."""
    m = re.fullmatch(r"\s*(\w+)\s*(?:\[\s*([-\d%]*)\s*:\s*([-\d%]*)\s*\])?\s*", split)
    if not m:
        raise ConfigError(f"Cannot parse split {split!r}; use e.g. 'train', 'train[:90%]'.")
    return m.group(1), (m.group(2) or "", m.group(3) or "")


def _slice_indices(n: int, bounds: tuple[str, str]) -> range:
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

    def load(self, example: dict) -> dict:
        """Turns a listed example into {'image', 'label'} (e.g. reads the file); lazy so that
        only the examples a process keeps are read. May add 'valid' (bool): False for an
        unreadable example, which evaluation masks out."""
        return example

    def check(self) -> None:
        """Called by the pipelines after each batch: raises or logs what loading found."""

    def num_examples(self, split: str) -> int:
        raise NotImplementedError

    def dataset(
        self, split: str, *, process_index: int, process_count: int, drop_remainder: bool, seed: int
    ) -> tf.data.Dataset:
        raise NotImplementedError


@dataclasses.dataclass
class ArraySource(Source):
    """Examples held in memory as numpy arrays, one array pair per split."""

    images: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    labels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def _indices(self, split: str) -> tuple[str, range]:
        base, bounds = parse_split(split)
        if base not in self.images:
            raise ConfigError(
                f"Dataset {self.name!r} has no split {base!r}; available: {sorted(self.images)}."
            )
        return base, _slice_indices(len(self.images[base]), bounds)

    def num_examples(self, split: str) -> int:
        return len(self._indices(split)[1])

    @property
    def channels(self) -> int:
        """Channels of the stored images (1 for digits): the model input default."""
        return int(next(iter(self.images.values())).shape[-1])

    def dataset(self, split, *, process_index, process_count, drop_remainder, seed):
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


# How much of a file's end is searched for its format's end marker: some writers pad or
# append metadata after a JPEG's EOI, which decoders ignore.
_TAIL = 1024
_PNG = b"\x89PNG\r\n\x1a\n"
_NAMED_CORRUPT = 10  # corrupt files named one by one in the logs; later ones every 100th


def looks_complete(data: bytes) -> bool:
    """Whether bytes are a whole JPEG / PNG / GIF / BMP: its signature at the start and its end
    marker (JPEG EOI, PNG IEND, GIF trailer) near the end, or a BMP no longer than the file.
    The same test as `looks_complete_tf`, on the host."""
    tail = data[-_TAIL:]
    if data.startswith(b"\xff\xd8\xff"):
        return b"\xff\xd9" in tail
    if data.startswith(_PNG):
        return b"IEND" in tail
    if data.startswith((b"GIF87a", b"GIF89a")):
        return b";" in tail
    if data.startswith(b"BM"):
        return len(data) >= 26 and int.from_bytes(data[2:6], "little") <= len(data)
    return False


def looks_complete_tf(data: tf.Tensor) -> tf.Tensor:
    """`looks_complete` as TensorFlow ops on a scalar string (inside tf.data, no Python)."""
    n = tf.strings.length(data)
    head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, 8), "\0" * 8]), 0, 8)
    tail = tf.strings.substr(data, tf.maximum(n - _TAIL, 0), _TAIL)

    def starts(magic: bytes):
        return tf.equal(tf.strings.substr(head, 0, len(magic)), magic)

    def has(marker: bytes):
        return tf.size(tf.strings.split(tail, sep=marker)) > 1

    size_bytes = tf.cast(tf.io.decode_raw(tf.strings.substr(head, 2, 4), tf.uint8), tf.int64)
    bmp_size = tf.reduce_sum(size_bytes * tf.constant([1, 1 << 8, 1 << 16, 1 << 24], tf.int64))
    return (
        (starts(b"\xff\xd8\xff") & has(b"\xff\xd9"))
        | (starts(_PNG) & has(b"IEND"))
        | ((starts(b"GIF87a") | starts(b"GIF89a")) & has(b";"))
        | (starts(b"BM") & (n >= 26) & (bmp_size <= tf.cast(n, tf.int64)))
    )


@dataclasses.dataclass
class FolderSource(Source):
    """Images in `<root>/<split>/<class>/<file>` (JPEG/PNG/BMP/GIF), classes sorted by name.

    If `<root>` holds class folders directly, its only split is `all` (slice it, e.g.
    `all[:90%]` / `all[90%:]`; files are listed in a fixed, class-interleaved order so a
    slice covers every class).

    Corrupt files. A truncated file (an interrupted copy or download) or a non-image with an
    image extension would stop a tf.data pipeline with a decode error that names no file.
    Each file is therefore checked where it is read, in the pipeline, with
    `looks_complete_tf`: its format's signature at the start and end marker near the end.
    That costs nothing extra (the bytes are in memory anyway), unlike a scan of every file
    when the folder is listed (ImageNet: 1.28 M files, minutes of I/O on each start) or
    decoding twice with PIL. A file that fails the check is recorded on the host (file name
    and count, through a `tf.py_function` that runs only for bad files) and then
      - `on_corrupt='skip'`: is logged (the first ten by name, then every 100th) and replaced
        in its batch by a fixed, complete image of the folder (training; evaluation masks it
        out), so every epoch still has the same number of batches in the same order: resumes
        stay exact, which dropping examples (`Dataset.ignore_errors`) would break;
      - `on_corrupt='error'`: raises `DataError` naming the file(s) at the next batch.
    A file with intact markers but damaged contents still fails to decode; the pipelines
    turn that into a `DataError` (TensorFlow's message does not name the file).
    """

    root: str = ""
    classes: Sequence[str] = ()
    files: dict[str, list[tuple[str, int]]] = dataclasses.field(default_factory=dict)
    on_corrupt: str = "skip"
    # path -> times it was found corrupt (every epoch and eval pass reads it again).
    corrupt: dict[str, int] = dataclasses.field(default_factory=dict)
    _fallback_example: tuple[bytes, int] | None = dataclasses.field(default=None, repr=False)

    def _entries(self, split: str):
        base, bounds = parse_split(split)
        if base not in self.files:
            raise ConfigError(
                f"Image folder {self.root!r} has no split {base!r}; available: "
                f"{sorted(self.files)}. Layout: <root>/<split>/<class>/<image>."
            )
        entries = self.files[base]
        return [entries[i] for i in _slice_indices(len(entries), bounds)]

    def num_examples(self, split: str) -> int:
        return len(self._entries(split))

    def dataset(self, split, *, process_index, process_count, drop_remainder, seed):
        del seed
        entries = self._entries(split)
        mine = process_slice(len(entries), process_index, process_count, drop_remainder)
        entries = entries[mine.start : mine.stop]
        paths = [p for p, _ in entries]
        labels = np.array([c for _, c in entries], np.int32)
        return tf.data.Dataset.from_tensor_slices({"path": paths, "label": labels})

    def load(self, example):
        data = tf.io.read_file(example["path"])
        fallback, fallback_label = self._fallback()
        valid = looks_complete_tf(data)
        valid = tf.cond(
            valid,
            lambda: valid,
            lambda: tf.py_function(self._record_corrupt, [example["path"]], tf.bool),
        )
        valid.set_shape([])
        return {
            "image": tf.where(valid, data, tf.constant(fallback)),
            "label": tf.where(valid, example["label"], tf.constant(fallback_label, tf.int32)),
            "valid": valid,
        }

    def _fallback(self) -> tuple[bytes, int]:
        """The first complete image of the folder: the stand-in for corrupt ones."""
        if self._fallback_example is None:
            for entries in self.files.values():
                for path, label in entries[:1000]:
                    with tf.io.gfile.GFile(path, "rb") as f:
                        data = f.read()
                    if looks_complete(data):
                        self._fallback_example = (data, label)
                        return self._fallback_example
            raise DataError(
                f"None of the first files of image folder {self.root!r} is a complete JPEG, "
                "PNG, GIF or BMP image; check the folder."
            )
        return self._fallback_example

    def _record_corrupt(self, path: tf.Tensor) -> bool:
        """Host side of the check (a tf.py_function, called only for corrupt files)."""
        name = path.numpy().decode()
        first = name not in self.corrupt
        self.corrupt[name] = self.corrupt.get(name, 0) + 1
        n = len(self.corrupt)
        if first and self.on_corrupt == "skip" and (n <= _NAMED_CORRUPT or n % 100 == 0):
            logging.warning(
                "Skipping corrupt or truncated image %s (%d such file(s) in %s so far; each "
                "is replaced by a fixed complete image in training and masked in evaluation).",
                name,
                n,
                self.root,
            )
        return False

    def check(self) -> None:
        if self.corrupt and self.on_corrupt == "error":
            names = sorted(self.corrupt)
            raise DataError(
                f"Corrupt or truncated image file(s) in {self.root}: {', '.join(names[:5])}"
                + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                + " (not a complete JPEG/PNG/GIF/BMP). Delete or replace them, or set "
                "--config.data.on_corrupt=skip to skip such files (logged and counted)."
            )


def _list_classes(directory: str) -> list[str]:
    return sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))


def _list_images(directory: str, classes: Sequence[str]) -> list[tuple[str, int]]:
    per_class = []
    for c, name in enumerate(classes):
        folder = os.path.join(directory, name)
        files = (
            sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
            if os.path.isdir(folder)
            else []
        )
        per_class.append([(os.path.join(folder, f), c) for f in files])
    # Interleave classes so any contiguous slice is class balanced.
    out = []
    for i in range(max((len(p) for p in per_class), default=0)):
        out.extend(p[i] for p in per_class if i < len(p))
    return out


def folder_source(root: str, on_corrupt: str = "skip") -> FolderSource:
    if on_corrupt not in ("skip", "error"):
        raise ConfigError(f"--config.data.on_corrupt={on_corrupt!r}: use 'skip' or 'error'.")
    root = os.path.expanduser(root)
    if not os.path.isdir(root):
        raise DataError(
            f"Image folder {root!r} does not exist. Expected <root>/<split>/<class>/<image> "
            "(e.g. <root>/train/cat/0001.jpg) or <root>/<class>/<image>; fix "
            "--config.data.source=folder:<path>."
        )
    subdirs = _list_classes(root)
    split_names = [d for d in subdirs if d in ("train", "val", "validation", "test")]
    if split_names:
        classes = _list_classes(os.path.join(root, split_names[0]))
        files = {s: _list_images(os.path.join(root, s), classes) for s in split_names}
    else:
        classes = subdirs
        files = {"all": _list_images(root, classes)}
    if not classes or not any(files.values()):
        raise DataError(
            f"Image folder {root!r} has no class folders with images "
            f"({', '.join(IMAGE_EXTENSIONS)})."
            " Expected <root>/<split>/<class>/<image>."
        )
    return FolderSource(
        f"folder:{root}",
        len(classes),
        root=root,
        classes=classes,
        files=files,
        on_corrupt=on_corrupt,
    )


@dataclasses.dataclass
class TfdsSource(Source):
    """A TensorFlow Datasets dataset, prepared in `data_dir` (default ~/tensorflow_datasets)."""

    builder: object = None
    image_key: str = "image"
    label_key: str = "label"
    global_order = False

    def num_examples(self, split: str) -> int:
        splits = self.builder.info.splits
        try:
            return splits[split].num_examples
        except (KeyError, ValueError):
            if len(splits):  # the dataset is there but has no such split
                raise ConfigError(
                    f"TFDS dataset {self.name!r} has no split {split!r}; available: "
                    f"{sorted(splits.keys())}."
                ) from None
        # No split metadata (only under tfds.testing.mock_data): count by reading.
        return int(self._read(split, shuffle=False, seed=0).reduce(0, lambda n, _: n + 1))

    def _read(self, split: str, shuffle: bool, seed: int) -> tf.data.Dataset:
        import tensorflow_datasets as tfds

        read_config = tfds.ReadConfig(shuffle_seed=seed, interleave_cycle_length=16)
        return self.builder.as_dataset(
            split=split,
            shuffle_files=shuffle,
            read_config=read_config,
            decoders={self.image_key: tfds.decode.SkipDecoding()},
        )

    def dataset(self, split, *, process_index, process_count, drop_remainder, seed):
        import tensorflow_datasets as tfds

        if process_count > 1:
            sub = tfds.even_splits(split, n=process_count, drop_remainder=drop_remainder)
            split = sub[process_index]
        ds = self._read(split, shuffle=drop_remainder, seed=seed)  # shuffle files when training
        return ds.map(
            lambda e: {"image": e[self.image_key], "label": tf.cast(e[self.label_key], tf.int32)}
        )


def tfds_source(name: str, data_dir: str | None, download: bool) -> TfdsSource:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and friends
        raise DataError(f"TFDS has no dataset {name!r}: {e}") from None
    if not builder.is_prepared() and not _tfds_is_mocked():
        manual = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
        where = builder.data_dir
        root = data_dir or os.path.dirname(os.path.dirname(where))
        if manual:
            raise DataError(
                f"TFDS dataset {name!r} is not prepared in {where}.\n"
                f"It needs a manual download: place the files in "
                f"{os.path.join(root, 'downloads', 'manual')}"
                f" and run\n  tfds build {name.split(':')[0]}"
                + (f" --data_dir={data_dir}" if data_dir else "")
                + f"\nInstructions from TFDS:\n{manual.strip()}\n"
                "Or point --config.data.data_dir at the directory where it is prepared."
            )
        if not download:
            raise DataError(
                f"TFDS dataset {name!r} is not prepared in {where}. Run `tfds build "
                f"{name.split(':')[0]}`, set --config.data.download=True to let training "
                "download it, or point --config.data.data_dir at a prepared copy."
            )
        builder.download_and_prepare()
    info = builder.info
    label = info.features["label"] if "label" in info.features.keys() else None  # noqa: SIM118 (FeaturesDict)
    if label is None or not hasattr(label, "num_classes"):
        raise DataError(f"TFDS dataset {name!r} has no ClassLabel feature named 'label'.")
    return TfdsSource(name=f"tfds:{name}", num_classes=label.num_classes, builder=builder)


def _tfds_is_mocked() -> bool:
    import tensorflow_datasets as tfds

    return "mock" in getattr(tfds.core.DatasetBuilder.as_dataset, "__qualname__", "").lower() or (
        "mocking" in getattr(tfds.core.DatasetBuilder.as_dataset, "__module__", "")
    )


def get_source(
    spec: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    num_classes: int = 10,
    image_size: int = 32,
    on_corrupt: str = "skip",
) -> Source:
    """Builds a source from its name (see module docstring); `on_corrupt` is for folders."""
    if spec == "digits" or spec.startswith("digits:"):
        return digits_source(task=spec.partition(":")[2] or "digit")
    if spec == "synthetic":
        return synthetic_source(num_classes=num_classes, image_size=image_size)
    if spec.startswith("folder:"):
        return folder_source(spec[len("folder:") :], on_corrupt)
    if spec.startswith("tfds:"):
        return tfds_source(spec[len("tfds:") :], data_dir, download)
    raise ConfigError(
        f"Unknown data source {spec!r}; use 'digits' ('digits:parity', 'digits:loop'), "
        "'synthetic', 'folder:<path>' or "
        "'tfds:<name>' (e.g. tfds:imagenet2012)."
    )
