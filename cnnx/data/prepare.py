"""Preparing a TensorFlow Datasets dataset for cnnx, in cnnx's own environment.

    python -m cnnx.data.prepare imagenet2012 --data_dir=D [--manual_dir=M]
    python -m cnnx.data.prepare cifar10 --data_dir=D          # downloads it

Runs TFDS's own builder through its Python API (`tfds.builder(name).download_and_prepare`),
not the `tfds build` command line, which imports apache_beam at start-up
(tensorflow/datasets#5463) although imagenet2012 and the other generator builders never use
it. TFDS also imports `importlib_resources` to prepare any dataset while declaring it only for
Python < 3.9 (tensorflow/datasets#11212): requirements.txt pins it, and a missing one is named.

Before starting, the manual files of ImageNet are checked (present, whole tar archives of the
expected kind; a size other than the official archive's is reported, not refused) and the
disk is asked for room for the result, so a missing or truncated archive or a small disk is
one `error:` line now rather than a traceback hours later.
Progress is TFDS's own (tqdm bars per split). TFDS writes into `<name>/incomplete.XXXXXX_<ver>`
and renames it to `<name>/<version>` only when every split is written, so an interrupted or
failed preparation never looks complete; the generation itself does not resume (a new run
starts the splits over, reusing finished downloads), and the leftover folder of a run that was
killed outright is removed at the next start. Every failure is a `DataError` (or
`MissingDependency`): one line naming the dataset, what failed and what to do.
"""

import argparse
import dataclasses
import errno
import glob
import importlib.util
import os
import re
import shutil
import sys
import tarfile

from cnnx.errors import CnnxError, DataError, MissingDependency

IMAGENET_URL = "https://image-net.org/download-images"


@dataclasses.dataclass(frozen=True)
class ManualFile:
    """One archive a manual-download dataset needs.

    Attributes:
      name: its file name in the manual directory.
      size: the official archive's size in bytes (a different size is reported, not refused:
        subsets and test miniatures are legitimate).
      first_member: a pattern the archive's first entry matches (what makes it this archive).
      example: an entry name that matches, for the message.
    """

    name: str
    size: int
    first_member: str
    example: str


_IMAGENET = (
    ManualFile("ILSVRC2012_img_train.tar", 147_897_477_120, r"n\d{8}\.tar", "n01440764.tar"),
    ManualFile(
        "ILSVRC2012_img_val.tar",
        6_744_924_160,
        r"ILSVRC2012_val_\d{8}\.JPEG",
        "ILSVRC2012_val_00000001.JPEG",
    ),
)
# TFDS builder name -> the archives it reads from the manual directory (sizes and checksums
# as tensorflow_datasets/datasets/imagenet2012/checksums.tsv records them): every TFDS builder
# that reads ImageNet's own archives (their MANUAL_DOWNLOAD_INSTRUCTIONS name them).
MANUAL_FILES = {
    **dict.fromkeys(
        (
            "imagenet2012",
            "imagenet2012_subset",
            "imagenet2012_corrupted",
            "imagenet2012_fewshot",
            "imagenet_lt",
            "imagenet_pi",
        ),
        _IMAGENET,
    ),
    **dict.fromkeys(("imagenet2012_real", "imagenet2012_multilabel"), _IMAGENET[1:]),
}


def base_name(name: str) -> str:
    """'imagenet2012:5.1.0' or 'imagenet2012_subset/1pct' -> the builder name."""
    return re.split(r"[:/]", name, maxsplit=1)[0]


def command(name: str, data_dir: str | None, manual_dir: str | None = None) -> str:
    """The command line that prepares `name` (for messages)."""
    words = ["python -m cnnx.data.prepare", name]
    words += [f"--data_dir={data_dir}"] if data_dir else []
    words += [f"--manual_dir={manual_dir}"] if manual_dir else []
    return " ".join(words)


def builder_for(name: str, data_dir: str | None):
    """`tfds.builder(name, data_dir=...)`.

    Raises:
      DataError: TFDS knows no dataset of that name (or version / config).
    """
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and friends
        # TFDS's message lists every dataset it has; keep its suggestion, if it made one.
        guess = re.search(r"Did you mean: \S+ -> (\S+)", str(e))
        why = f"did you mean {guess.group(1)!r}?" if guess else _one_line(e)
        raise DataError(
            f"TFDS has no dataset {name!r}: {why} (names: "
            "https://www.tensorflow.org/datasets/catalog/overview)"
        ) from None


def default_manual_dir(builder) -> str:
    """TFDS's default manual directory: `<data_dir>/downloads/manual`."""
    return os.path.join(os.fspath(builder.data_dir_root), "downloads", "manual")


def needs_manual_download(builder) -> bool:
    return bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))


def manual_steps(name: str, manual_dir: str) -> str:
    """What to download where, in one sentence."""
    files = MANUAL_FILES.get(base_name(name))
    if files:
        names = " and ".join(f.name for f in files)
        return f"download {names} from {IMAGENET_URL} (registration needed) into {manual_dir}"
    return f"place the files TFDS names into {manual_dir}"


def check_manual_files(name: str, manual_dir: str, data_dir: str) -> list[str]:
    """Checks the archives a manual-download dataset needs before TFDS starts on them.

    Args:
      name: the TFDS name.
      manual_dir: where the archives are.
      data_dir: where the prepared dataset goes (its disk must hold about the archives' size).

    Returns:
      Notes for the user (an archive whose size is not the official one).

    Raises:
      DataError: one line naming every archive that is missing, empty, truncated (a size that
        is not a whole number of 512-byte tar blocks, or no end-of-archive blocks) or not the
        expected archive (its first entry), and what to do; not enough free space for the
        prepared dataset (`check_free_space`).
    """
    files = MANUAL_FILES.get(base_name(name))
    if files is None:  # another manual dataset: TFDS checks its own files
        if not os.path.isdir(manual_dir) or not os.listdir(manual_dir):
            raise DataError(
                f"TFDS dataset {name!r} needs a manual download and {manual_dir} is empty or "
                f"missing: {manual_steps(name, manual_dir)}, then run "
                f"`{command(name, None, manual_dir)}` again."
            )
        return []
    problems, notes = [], []
    for f in files:
        path = os.path.join(manual_dir, f.name)
        problem = _archive_problem(path, f)
        if problem:
            problems.append(f"{f.name} {problem}")
        elif os.path.getsize(path) != f.size:
            notes.append(
                f"{f.name} is {os.path.getsize(path):,} bytes, not the official archive's "
                f"{f.size:,}: preparing the images it holds."
            )
    if problems:
        steps = manual_steps(name, manual_dir)
        raise DataError(
            f"Cannot prepare TFDS dataset {name!r} from {manual_dir}: {'; '.join(problems)}. "
            f"{steps[0].upper()}{steps[1:]} (or pass --manual_dir=<where they "
            "are>), then run the same command again."
        )
    archives = sum(os.path.getsize(os.path.join(manual_dir, f.name)) for f in files)
    check_free_space(name, data_dir, archives)
    return notes


# The prepared dataset is about as large as its archives (the JPEGs are stored as they are):
# imagenet2012 5.1.0 is 155.8 GiB prepared from 154.6 GB of tars. Ask for a margin on top.
FREE_SPACE_MARGIN = 1.1


def check_free_space(name: str, data_dir: str, archive_bytes: int) -> None:
    """Refuses to start a preparation that would fill the disk hours in.

    Raises:
      DataError: `data_dir`'s file system has less than `FREE_SPACE_MARGIN` x `archive_bytes`
        free.
    """
    where = data_dir
    while not os.path.exists(where):  # the data dir may not exist yet
        where = os.path.dirname(where) or "."
    free, needed = shutil.disk_usage(where).free, int(FREE_SPACE_MARGIN * archive_bytes)
    if free < needed:
        raise DataError(
            f"Preparing TFDS dataset {name!r} writes about {needed / 2**30:.1f} GiB into "
            f"{data_dir}, whose disk has {free / 2**30:.1f} GiB free: free space there or "
            "pass another --data_dir."
        )


def _archive_problem(path: str, expected: ManualFile) -> str | None:
    """Why `path` is not a whole archive of the expected kind, or None."""
    if not os.path.exists(path):
        return "is missing"
    if not os.path.isfile(path):
        return "is not a file"
    size = os.path.getsize(path)
    if size == 0:
        return "is empty"
    # A tar is a whole number of 512-byte blocks and ends with two zero blocks; a download cut
    # short almost never is or does.
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 1024))
        tail = fh.read()
    if size % 512 or size < 1536 or tail.strip(b"\0"):
        return f"is truncated ({size:,} bytes; an interrupted download?)"
    try:
        with tarfile.open(path, "r:") as tar:
            first = tar.next()
    except (tarfile.TarError, OSError) as e:
        return f"is not a readable tar archive ({_one_line(e)})"
    if first is None or not re.fullmatch(expected.first_member, os.path.basename(first.name)):
        found = first.name if first is not None else "nothing"
        return (
            f"is not the expected archive (its first entry is {found!r}, expected entries "
            f"such as {expected.example!r})"
        )
    return None


def remove_leftovers(builder) -> list[str]:
    """Removes the `incomplete.*` folders of this version that a killed preparation left.

    TFDS removes its own on any exception; a SIGKILL or power loss leaves one, never read
    (`is_prepared` looks at `<name>/<version>` only) but as large as what was written. One
    preparation of a dataset per data_dir at a time: a second one would remove the first's.
    """
    data_dir = os.fspath(builder.data_dir)
    pattern = os.path.join(os.path.dirname(data_dir), f"incomplete.*_{os.path.basename(data_dir)}")
    removed = [p for p in glob.glob(pattern) if os.path.isdir(p)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


# Modules TFDS imports while preparing without declaring them -> what pip installs.
_UNDECLARED = {"importlib_resources": "importlib_resources"}


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None, say=print):
    """Downloads (where TFDS can) and prepares `name` in `data_dir`.

    Args:
      name: as `tfds.builder` takes it ('imagenet2012', 'cifar10:3.0.2', ...).
      data_dir: the TFDS data directory (None: TFDS's default, ~/tensorflow_datasets).
      manual_dir: where a manual download lies (None: `<data_dir>/downloads/manual`).
      say: where progress lines go (print; the training path passes absl's logging).

    Returns:
      The prepared builder.

    Raises:
      MissingDependency: TensorFlow, TFDS or a module TFDS needs is missing.
      DataError: unknown dataset, missing or damaged manual files, or the download or the
        preparation failed; one line, naming the dataset and what to do. Nothing of a failed
        preparation is left looking complete.
    """
    from cnnx.process_defaults import import_tensorflow

    import_tensorflow(f"preparing TFDS dataset {name!r}", datasets=True)
    for module, package in _UNDECLARED.items():
        if importlib.util.find_spec(module) is None:
            raise _missing(name, module, package)
    import tensorflow_datasets as tfds

    builder = builder_for(name, data_dir)
    if builder.is_prepared():
        return builder
    if os.path.isdir(os.fspath(builder.data_dir)):  # TFDS would "reuse" it as it is
        raise DataError(
            f"{builder.data_dir} exists but holds no prepared {name} (no dataset_info.json: a "
            "copy cut short, or files placed there by hand). Move it away, then run "
            f"`{command(name, data_dir, manual_dir)}` again."
        )
    for path in remove_leftovers(builder):
        say(f"Removed {path}, the unfinished output of an interrupted preparation.")
    config = tfds.download.DownloadConfig()
    if needs_manual_download(builder):
        manual_dir = manual_dir or default_manual_dir(builder)
        root = os.fspath(builder.data_dir_root)
        for note in check_manual_files(name, manual_dir, root):
            say(f"note: {note}")
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    say(f"Preparing {name} in {builder.data_dir} (TFDS's progress bars follow).")
    try:
        builder.download_and_prepare(download_config=config)
    except CnnxError:
        raise
    except ModuleNotFoundError as e:
        raise _missing(name, e.name, e.name) from None
    except Exception as e:  # every other failure becomes one line
        raise DataError(_failure(name, data_dir, manual_dir, builder, e)) from None
    return builder


def _missing(name: str, module: str, package: str) -> MissingDependency:
    return MissingDependency(
        f"Preparing TFDS dataset {name!r} needs the Python module {module!r}, which TFDS "
        f"imports without installing it: pip install {package}"
        + (" (requirements.txt pins it)." if module in _UNDECLARED else ".")
    )


def _failure(name, data_dir, manual_dir, builder, e: Exception) -> str:
    """One line for a failed `download_and_prepare`: what failed and what to do."""
    from tensorflow_datasets.core.download import download_manager
    from tensorflow_datasets.core.download.util import DownloadError

    again = f"then run `{command(name, data_dir, manual_dir)}` again"
    downloads = os.path.join(os.fspath(builder.data_dir_root), "downloads")
    if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "disk space" in str(e):
        what, todo = "the disk is full", f"free space where {builder.data_dir} lies, {again}"
    elif isinstance(e, download_manager.NonMatchingChecksumError):
        what = "a downloaded file does not match TFDS's checksum (damaged or changed upstream)"
        todo = f"delete it from {downloads}, {again}"
    elif isinstance(e, DownloadError) or _is_network_error(e):
        what = "the download failed"
        todo = (
            "check the network (and HTTPS_PROXY if one is needed), "
            f"{again}; finished downloads in {downloads} are reused"
        )
    else:
        what = "the preparation failed"
        todo = f"fix the cause, {again}"
    return (
        f"Preparing TFDS dataset {name!r} in {builder.data_dir} failed: {what} "
        f"({type(e).__name__}: {_one_line(e)}). Nothing was kept as prepared; {todo}."
    )


def _is_network_error(e: Exception) -> bool:
    import requests

    return isinstance(e, requests.exceptions.RequestException | ConnectionError | TimeoutError)


def _one_line(e: Exception, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def train_flags(name: str, data_dir: str | None, builder) -> str:
    """The train.py flags that read the prepared dataset."""
    splits = sorted(builder.info.splits.keys())
    flags = [f"--config.data.source=tfds:{name}"]
    flags += [f"--config.data.data_dir={data_dir}"] if data_dir else []
    if "train" in splits:
        flags.append("--config.data.train_split=train")
    eval_split = next((s for s in ("validation", "test") if s in splits), None)
    if eval_split:
        flags.append(f"--config.data.eval_split={eval_split}")
    return " ".join(flags)


def summary(name: str, data_dir: str | None, builder) -> str:
    """What was prepared and the flags train.py needs, for the end of the command."""
    info = builder.info
    counts = ", ".join(f"{s} {info.splits[s].num_examples:,}" for s in sorted(info.splits.keys()))
    label = info.features["label"] if "label" in info.features.keys() else None  # noqa: SIM118
    classes = f"; {label.num_classes} classes" if hasattr(label, "num_classes") else ""
    return (
        f"{name} {info.version} is prepared in {builder.data_dir} ({counts} examples{classes}).\n"
        "Train on it with:\n  python train.py --config=<config> "
        f"{train_flags(name, data_dir, builder)} --workdir=<workdir>"
    )


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0, or 2 after one `error:` line)."""
    parser = argparse.ArgumentParser(
        prog="python -m cnnx.data.prepare",
        description="Download (where TFDS can) and prepare a TFDS dataset for train.py.",
    )
    parser.add_argument("name", help="TFDS dataset, e.g. imagenet2012, cifar10, imagenet_v2")
    parser.add_argument(
        "--data_dir", help="TFDS data directory (default: TFDS's, ~/tensorflow_datasets)"
    )
    parser.add_argument(
        "--manual_dir",
        help="where a manual download lies (default: <data_dir>/downloads/manual); for "
        "imagenet2012: ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar",
    )
    args = parser.parse_args(argv)
    try:
        builder = prepare(args.name, args.data_dir, args.manual_dir)
    except CnnxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"error: interrupted; nothing of {args.name} was kept as prepared. Run the same "
            "command again to start over (finished downloads are reused).",
            file=sys.stderr,
        )
        return 130
    print(summary(args.name, args.data_dir, builder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
