"""The `folder:<path>` source: images in class folders, one class map for every split.

Layouts (as torchvision's `ImageFolder`, with TFDS-style split folders):
  <root>/<split>/<class>/**/<image>   splits among train, val, validation, test
  <root>/<class>/**/<image>           one split, `all` (slice it: `all[:90%]`, `all[90%:]`)

Images may sit in subfolders of a class folder (they are walked, links followed; a folder
reached a second time, e.g. through a link loop, is read once, with a warning). The class
list is the training split's (`train/`), or the union of the splits when there is none, and
every split uses it, so a label means the same class everywhere. A class folder that an
evaluation split has and `train/` lacks, or a class without any image, is an error: the first
would silently leave evaluation (or shift every label), the second adds an output that no
image trains. A folder of one class is an error too (every prediction would be right).

File names need not be UTF-8: paths are handled as bytes (`os.fsencode`) and shown with
backslash escapes; class folder names must be UTF-8 (they are the labels' names).

Images are decoded as stored: EXIF orientation is not applied (neither do torchvision's
`ImageFolder`, PIL's `Image.open` nor TFDS); rotate camera photos beforehand if it matters
(e.g. `PIL.ImageOps.exif_transpose`). Images above Pillow's decompression-bomb limit
(`cnnx.data.image_header`, 179 megapixels) are unreadable files, found before decoding.

Unreadable files (truncated, not an image, undecodable) are not detected here, when listing,
but where they are decoded: the pipelines run each example's reading and preprocessing so that
a failure is caught per example (`cnnx.data.pipeline`), then call `record_unreadable`, which
names the file and applies `on_corrupt`. That costs nothing for the good files (no second
read, no second decode), unlike a scan of every file at start (ImageNet: 1.28 M files).

Folders are read through tf.data: TensorFlow is imported when the source is resolved, so this
module imports without it and a missing TensorFlow is one error line at once.
"""

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
from absl import logging

from cnnx.data.sources import (
    Source,
    is_out_of_memory,
    out_of_memory,
    parse_split,
    process_slice,
    require_tensorflow,
    slice_indices,
    source,
)
from cnnx.errors import CnnxError, ConfigError, DataError

# What tf.io.decode_image reads (the same extensions torchvision's ImageFolder takes, less
# the TIFF/PPM/PGM files TensorFlow cannot decode).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
SPLIT_NAMES = ("train", "val", "validation", "test")
ON_CORRUPT = ("skip", "error")
_NAMED_CORRUPT = 10  # unreadable files named one by one in the logs; later ones every 100th


@dataclasses.dataclass
class FolderSource(Source):
    """Image files listed per split as (path, label); see the module docstring.

    `on_corrupt`: what an unreadable file does, once the pipeline found it:
      - 'skip': it is logged (the first ten by name, then every 100th) and counted in
        `corrupt`; in training the example is replaced by the next one of the epoch's order
        (with that example's own label), in evaluation it is masked out. Every epoch keeps the
        same number of batches in the same order, so resumes stay exact.
      - 'error': `check()` raises `DataError` naming the file(s) after the batch.
    """

    root: str = ""
    classes: Sequence[str] = ()
    files: dict[str, list[tuple[str, int]]] = dataclasses.field(default_factory=dict)
    on_corrupt: str = dataclasses.field(kw_only=True)  # no default: the config schema has it
    # path (`shown`) -> times it was found unreadable (every epoch and eval pass reads it again).
    corrupt: dict[str, int] = dataclasses.field(default_factory=dict)
    _paths: dict[str, bytes] = dataclasses.field(default_factory=dict)  # shown -> the file
    # path (`shown`) -> the error preparing it again on the host raised (None: it worked).
    _errors: dict[str, Exception | None] = dataclasses.field(default_factory=dict)
    # Raised by check(): an example and all its stand-ins were unreadable, or the host ran out
    # of memory preparing one (no fault of the file: it is not counted as corrupt).
    failure: CnnxError | None = None
    can_fail = True

    def _entries(self, split: str):
        base, bounds = parse_split(split)
        if base not in self.files:
            raise ConfigError(
                f"Image folder {self.root!r} has no split {base!r}; available: "
                f"{sorted(self.files)}. Layout: <root>/<split>/<class>/<image>."
            )
        entries = self.files[base]
        return [entries[i] for i in slice_indices(len(entries), bounds)]

    def num_examples(self, split: str) -> int:
        return len(self._entries(split))

    def dataset(self, split, *, process_index, process_count, drop_remainder, seed):
        import tensorflow as tf

        del seed
        entries = self._entries(split)
        mine = process_slice(len(entries), process_index, process_count, drop_remainder)
        entries = entries[mine.start : mine.stop]
        paths = [os.fsencode(p) for p, _ in entries]  # file names need not be UTF-8
        labels = np.array([c for _, c in entries], np.int32)
        return tf.data.Dataset.from_tensor_slices({"path": paths, "label": labels})

    def load(self, example):
        import tensorflow as tf

        from cnnx.data.image_header import check_pixels

        image = check_pixels(tf.io.read_file(example["path"]))  # a bomb fails here, per file
        return {"image": image, "label": example["label"]}

    def describe(self, example):
        return example["path"]

    def record_unreadable(self, path: bytes, error: Exception | None = None) -> None:
        """Host side: an example of `path` could not be read, decoded or preprocessed;
        `error`: what preparing it again on the host raised (see `Source.record_unreadable`)."""
        name = shown(path)
        if is_out_of_memory(error):
            self.failure = out_of_memory(f"preparing {name} of image folder {self.root}", error)
            return
        self._errors[name] = error
        self._paths[name] = os.fsencode(path)
        first = name not in self.corrupt
        self.corrupt[name] = self.corrupt.get(name, 0) + 1
        n = len(self.corrupt)
        if first and self.on_corrupt == "skip" and (n <= _NAMED_CORRUPT or n % 100 == 0):
            logging.warning(
                "Skipping corrupt or unreadable image %s (%s; %d such file(s) in %s so far). "
                "In training it is replaced by the next example of the epoch, with that "
                "example's label; in evaluation it is left out.",
                name,
                why_unreadable(path, error),
                n,
                self.root,
            )

    def record_exhausted(self, paths: Sequence[bytes]) -> None:
        if self.failure:  # an out-of-memory says more than the files it failed on
            return
        why = ", ".join(f"{shown(p)} ({self._why(p)})" for p in paths)
        self.failure = DataError(
            f"{len(paths)} consecutive examples of image folder {self.root} are unreadable "
            f"({why}): the folder looks broken, or the preprocessing fails on every image. Fix "
            "the files or the preprocessing."
        )

    def _why(self, path: bytes | str) -> str:
        return why_unreadable(path, self._errors.get(shown(path)))

    def check(self) -> None:
        if self.failure:
            raise self.failure
        if self.corrupt and self.on_corrupt == "error":
            names = sorted(self.corrupt)
            raise DataError(
                f"Corrupt or unreadable image file(s) in {self.root}: "
                + ", ".join(f"{n} ({self._why(self._paths.get(n, n))})" for n in names[:5])
                + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                + ". Delete or replace them, or set --config.data.on_corrupt=skip to skip such "
                "files (logged and counted)."
            )


def shown(path: bytes | str) -> str:
    """A file name for messages: its bytes as UTF-8, backslash escapes for any that are not."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def why_unreadable(path: bytes | str, error: Exception | None = None) -> str:
    """Why a file could not be used, found again on the host (only for files that failed);
    `error`: what preparing it again raised, named when the file itself reads and decodes."""
    import tensorflow as tf

    from cnnx.data.image_header import MAX_IMAGE_PIXELS, pixels

    try:
        with open(path, "rb") as f:
            data = f.read()
    except Exception as e:  # missing, permissions, I/O error
        return f"cannot be read: {type(e).__name__}"
    if not data:
        return "empty file"
    try:
        declared = int(pixels(tf.constant(data)))  # not decoded: it may be a bomb
    except Exception:  # a JPEG header TensorFlow cannot parse: the decoder says more
        declared = 0
    if declared > MAX_IMAGE_PIXELS:
        return (
            f"{declared / 1e6:.0f} megapixels, above the {MAX_IMAGE_PIXELS / 1e6:.0f}-megapixel "
            "limit for images (a decompression bomb, or an image to shrink first)"
        )
    try:
        shape = tf.io.decode_image(data, channels=3, expand_animations=False).shape
    except Exception as e:  # TensorFlow's own decode error
        lines = [x for x in str(getattr(e, "message", e)).splitlines() if x.strip()]
        return f"does not decode: {lines[-1].strip()[:120] if lines else type(e).__name__}"
    said = [x.strip() for x in str(getattr(error, "message", error)).splitlines() if x.strip()]
    detail = f": {type(error).__name__}: {said[0][:120]}" if error is not None and said else ""
    return f"decodes ({shape[0]}x{shape[1]}), but the preprocessing fails on it{detail}"


def _subfolders(directory: str) -> list[str]:
    """Visible subfolders, sorted (hidden ones such as .ipynb_checkpoints are no class)."""
    return sorted(
        d
        for d in os.listdir(directory)
        if not d.startswith(".") and os.path.isdir(os.path.join(directory, d))
    )


def _images_under(folder: str, split_dir: str, classes: list[str]) -> list[str]:
    """Image files anywhere under class folder `folder`, in a fixed order (as ImageFolder:
    links followed, but each real folder read once: a link loop would repeat the images).

    Raises:
      DataError: a link leads out of the class into another class's folder or into a folder
        that holds the split's classes: its images would be read under two labels.
    """
    own = os.path.realpath(folder)
    split_real = os.path.realpath(split_dir)
    name = os.path.basename(folder)
    others = {os.path.realpath(os.path.join(split_dir, c)): c for c in classes if c != name}
    if own in others:
        raise DataError(
            f"Class folders {name!r} and {others[own]!r} of {shown(split_dir)} are one folder "
            f"({shown(own)}, through a link): its images would take two labels. Remove the link."
        )
    out, walked = [], {}
    for parent, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(parent)
        if real in walked:
            logging.warning(
                "Image folder %s is %s again (through a link): its images are read once.",
                shown(parent),
                shown(walked[real]),
            )
            dirs[:] = []
            continue
        inside = next((c for r, c in others.items() if _within(real, r)), None)
        if inside is not None or _within(split_real, real):
            where = f"class {inside!r}'s folder" if inside else "the folder of all the classes"
            raise DataError(
                f"Image folder {shown(parent)} is a link to {where} ({shown(real)}): its images "
                f"would be read under class {name!r} as well. Remove the "
                "link, or copy the images that belong to this class."
            )
        walked[real] = parent
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(
            os.path.join(parent, f)
            for f in sorted(files)
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
        )
    return out


def _within(path: str, folder: str) -> bool:
    """Whether real path `path` is `folder` or lies under it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _interleaved(per_class: list[list[str]]) -> list[tuple[str, int]]:
    """(path, label) with classes interleaved, so any contiguous slice is class balanced."""
    out = []
    for i in range(max((len(p) for p in per_class), default=0)):
        out.extend((p[i], c) for c, p in enumerate(per_class) if i < len(p))
    return out


def class_map(per_split: dict[str, dict[str, list[str]]], root: str) -> list[str]:
    """The one class list of every split: train's (or the union), checked.

    Args:
      per_split: split -> class folder name -> image paths.
      root: for messages.

    Raises:
      DataError: an evaluation split has class folders that the training split lacks, or a
        class has no image.
    """
    if "train" in per_split:
        classes = sorted(per_split["train"])
        extra = {
            s: sorted(set(c) - set(classes)) for s, c in per_split.items() if set(c) - set(classes)
        }
        if extra:
            raise DataError(
                f"Image folder {root}: "
                + "; ".join(f"{s}/ has class folder(s) {', '.join(e)}" for s, e in extra.items())
                + " that train/ lacks. Every split must use train/'s classes (a label is a class "
                "index; images of a class train/ lacks could never be predicted). Add those "
                "classes to train/ or remove them."
            )
        defining = {"train": per_split["train"]}
    else:
        classes = sorted({c for split in per_split.values() for c in split})
        defining = per_split
    empty = [c for c in classes if not any(split.get(c) for split in defining.values())]
    if empty:
        where = "train/" if "train" in per_split else "any split"
        raise DataError(
            f"Image folder {root}: class folder(s) {', '.join(empty)} hold no image in {where} "
            f"({', '.join(IMAGE_EXTENSIONS)}, subfolders included); each would add an output "
            "that no image trains. Add images or remove the folder(s)."
        )
    if len(classes) < 2:
        raise DataError(
            f"Image folder {root}: one class ({', '.join(classes)}); a classifier needs at "
            "least two (with one, every prediction is right and top-1 is 100%). Expected "
            "<root>/<split>/<class>/<image> or <root>/<class>/<image>, a folder per class."
        )
    for split, found in per_split.items():
        missing = [c for c in classes if not found.get(c)]
        if missing and split != "train" and len(per_split) > 1:
            logging.info(
                "Image folder %s: split %s has no image of class(es) %s.",
                root,
                split,
                ", ".join(missing),
            )
    return classes


def folder_source(root: str, on_corrupt: str) -> FolderSource:
    """Lists an image folder (see the module docstring); `on_corrupt` as `FolderSource`.

    Raises:
      ConfigError: `on_corrupt` is not one of 'skip', 'error'.
      DataError: the folder is missing, empty, mixes split and class folders, or its splits'
        class folders disagree (see `class_map`).
    """
    if on_corrupt not in ON_CORRUPT:
        raise ConfigError(
            f"--config.data.on_corrupt={on_corrupt!r}: use {' or '.join(map(repr, ON_CORRUPT))}."
        )
    root = os.path.expanduser(root)
    if not os.path.isdir(root):
        raise DataError(
            f"Image folder {root!r} does not exist. Expected <root>/<split>/<class>/<image> "
            "(e.g. <root>/train/cat/0001.jpg) or <root>/<class>/<image>; fix "
            "--config.data.source=folder:<path>."
        )
    subdirs = _subfolders(root)
    split_names = [d for d in subdirs if d in SPLIT_NAMES]
    if split_names:
        others = [d for d in subdirs if d not in SPLIT_NAMES]
        if others:
            raise DataError(
                f"Image folder {root!r} mixes split folders ({', '.join(split_names)}) with "
                f"other folders ({', '.join(others)}): is {others[0]} a split (name it one of "
                f"{', '.join(SPLIT_NAMES)}) or a class (move it into each split)?"
            )
        split_dirs = {s: os.path.join(root, s) for s in split_names}
    else:
        split_dirs = {"all": root}
    per_split = {
        s: {c: _images_under(os.path.join(d, c), d, classes) for c in classes}
        for s, d in split_dirs.items()
        for classes in [_subfolders(d)]
    }
    if not any(files for split in per_split.values() for files in split.values()):
        raise DataError(
            f"Image folder {root!r} has no class folders with images "
            f"({', '.join(IMAGE_EXTENSIONS)})."
            " Expected <root>/<split>/<class>/<image>."
        )
    not_utf8 = sorted({shown(c) for split in per_split.values() for c in split if c != shown(c)})
    if not_utf8:
        raise DataError(
            f"Image folder {root}: class folder name(s) {', '.join(not_utf8)} are not UTF-8; "
            "they name the classes in results and logs. Rename them (e.g. convmv -f latin1 "
            "-t utf8 --notest -r)."
        )
    classes = class_map(per_split, root)
    files = {s: _interleaved([found.get(c, []) for c in classes]) for s, found in per_split.items()}
    return FolderSource(
        f"folder:{root}",
        len(classes),
        root=root,
        classes=classes,
        files=files,
        on_corrupt=on_corrupt,
    )


@source("folder")
def _folder(arg: str, data) -> FolderSource:
    require_tensorflow(f"--config.data.source=folder:{arg}")
    return folder_source(arg, data["on_corrupt"])
