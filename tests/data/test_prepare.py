"""`python -m cnnx.data.prepare`: TFDS's real builders fed real layouts, and every failure one
`error:` line with nothing left looking prepared (issue 30, items 1-3)."""

import functools
import http.server
import io
import os
import re
import tarfile
import threading

import pytest

from cnnx.data import prepare
from cnnx.errors import DataError, MissingDependency
from tests.data.imagenet_manual import write_manual_dir

tfds = pytest.importorskip("tensorflow_datasets")


def _run_main(capsys, *argv) -> tuple[int, str]:
    """(exit status, stderr) of the command line."""
    code = prepare.main(list(argv))
    return code, capsys.readouterr().err


def _error_line(err: str) -> str:
    """The one `error:` line, after TFDS's progress bars (which redraw with carriage returns)."""
    assert err.count("error:") == 1 and "Traceback" not in err, err
    return [line for line in re.split(r"[\r\n]", err) if line.strip()][-1]


def _nothing_prepared(data_dir, name: str) -> bool:
    """No version folder and no unfinished one under `<data_dir>/<name>`."""
    root = os.path.join(data_dir, name)
    return not os.path.isdir(root) or not os.listdir(root)


def test_missing_manual_files_are_named_before_anything_starts(tmp_path, capsys):
    code, err = _run_main(capsys, "imagenet2012", f"--data_dir={tmp_path}")
    assert code == 2 and err.count("error:") == 1 and len(err.strip().splitlines()) == 1, err
    manual = str(tmp_path / "downloads" / "manual")
    for text in ("imagenet2012", manual, "ILSVRC2012_img_train.tar is missing"):
        assert text in err
    assert "ILSVRC2012_img_val.tar is missing" in err and "image-net.org" in err
    assert _nothing_prepared(tmp_path, "imagenet2012")


@pytest.mark.parametrize("name", sorted(prepare.MANUAL_FILES))
def test_the_manual_files_are_the_ones_the_builder_asks_for(name, tmp_path):
    # ImageNet-ReaL's refusal once said "place the files TFDS names" instead of naming the tar:
    # every builder that reads ImageNet's archives is listed with exactly the ones it reads.
    instructions = tfds.builder(name, data_dir=str(tmp_path)).MANUAL_DOWNLOAD_INSTRUCTIONS
    asked = set(re.findall(r"ILSVRC2012_img_\w+\.tar", instructions))
    assert {f.name for f in prepare.MANUAL_FILES[name]} == asked


def test_an_unknown_name_gets_tfds_suggestion(tmp_path, capsys):
    code, err = _run_main(capsys, "imagenet2013", f"--data_dir={tmp_path}")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "TFDS has no dataset 'imagenet2013': did you mean 'imagenet2012'?" in err


def test_truncated_or_wrong_archives_are_refused(tmp_path):
    manual = tmp_path / "manual"
    write_manual_dir(str(manual), num_val=2, per_class=1, size=8)
    train = manual / "ILSVRC2012_img_train.tar"
    data = train.read_bytes()
    train.write_bytes(data[: len(data) // 2 + 100])  # an interrupted download
    with pytest.raises(DataError, match=r"ILSVRC2012_img_train.tar is truncated") as e:
        prepare.check_manual_files("imagenet2012", str(manual), str(tmp_path))
    assert "ILSVRC2012_img_val.tar" not in str(e.value).split("Download")[0]  # val is fine
    os.replace(manual / "ILSVRC2012_img_val.tar", train)  # the val archive under train's name
    with pytest.raises(DataError, match=r"first entry is 'ILSVRC2012_val_0000000\d.JPEG'"):
        prepare.check_manual_files("imagenet2012", str(manual), str(tmp_path))


def test_a_disk_too_small_for_the_prepared_dataset_is_refused_first(tmp_path, monkeypatch):
    manual = tmp_path / "manual"
    write_manual_dir(str(manual), num_val=2, per_class=1, size=8)
    archives = sum(p.stat().st_size for p in manual.iterdir())
    usage = prepare.shutil.disk_usage(tmp_path)
    target = str(tmp_path / "new" / "dir")  # not there yet: its disk is tmp_path's
    assert prepare.check_manual_files("imagenet2012", str(manual), target)  # the size notes
    monkeypatch.setattr(prepare.shutil, "disk_usage", lambda _: usage._replace(free=archives))
    with pytest.raises(DataError, match=r"writes about 0.0 GiB into .*new/dir, whose disk"):
        prepare.check_manual_files("imagenet2012", str(manual), target)


def test_a_module_tfds_forgets_to_declare_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(prepare._UNDECLARED, "no_such_module_cnnx", "no-such-package")
    with pytest.raises(MissingDependency, match="pip install no-such-package"):
        prepare.prepare("mnist", str(tmp_path))


def test_a_failure_inside_tfds_is_one_line_and_leaves_nothing_prepared(tmp_path, capsys):
    manual = tmp_path / "manual"
    write_manual_dir(str(manual), num_val=2, per_class=1, size=8)
    with tarfile.open(manual / "ILSVRC2012_img_train.tar", "a") as tar:  # a damaged synset tar
        info = tarfile.TarInfo("n99999999.tar")
        info.size = 600
        tar.addfile(info, io.BytesIO(b"x" * 600))
    code, err = _run_main(
        capsys, "imagenet2012", f"--data_dir={tmp_path}", f"--manual_dir={manual}"
    )
    assert code == 2
    line = _error_line(err)
    assert line.startswith("error: Preparing TFDS dataset 'imagenet2012'"), err
    assert "ReadError" in line and "again" in line
    assert _nothing_prepared(tmp_path, "imagenet2012")
    assert not tfds.builder("imagenet2012", data_dir=str(tmp_path)).is_prepared()


def test_a_version_folder_without_dataset_info_is_not_reused(tmp_path):
    """TFDS's download_and_prepare returns at once when the version folder exists."""
    version = tmp_path / "mnist" / "3.0.1"
    version.mkdir(parents=True)
    (version / "mnist-train.tfrecord-00000-of-00001").write_bytes(b"half")
    with pytest.raises(DataError, match=r"exists but holds no prepared mnist .* Move it away"):
        prepare.prepare("mnist", str(tmp_path))


@pytest.fixture
def stand_in_server(tmp_path):
    """An HTTP server on localhost serving `tmp_path / 'www'`; yields (root dir, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _write_mnist(root, counts: dict[str, int]) -> None:
    """MNIST's four gzipped IDX files, `counts` images per split, label = index % 10."""
    import gzip

    import numpy as np

    for split, n in counts.items():
        images = np.zeros((n, 28, 28), np.uint8)
        for i in range(n):
            images[i, i % 28, :] = 255  # something to tell the images apart
        header = np.array([2051, n, 28, 28], ">i4").tobytes()
        (root / f"{split}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(header + images.tobytes())
        )
        labels = (np.arange(n) % 10).astype(np.uint8)
        header = np.array([2049, n], ">i4").tobytes()
        (root / f"{split}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(header + labels.tobytes())
        )


@pytest.fixture
def mnist_from(monkeypatch):
    """Points TFDS's MNIST builder at another URL, with 12/6 examples instead of 60k/10k."""
    from tensorflow_datasets.image_classification import mnist

    def point(url: str):
        monkeypatch.setattr(mnist.MNIST, "URL", url)
        monkeypatch.setattr(mnist, "_TRAIN_EXAMPLES", 12)
        monkeypatch.setattr(mnist, "_TEST_EXAMPLES", 6)

    return point


def test_a_failed_download_is_one_line(tmp_path, stand_in_server, mnist_from):
    _, url = stand_in_server  # serves nothing: every file is a 404
    mnist_from(url)
    with pytest.raises(DataError) as e:
        prepare.prepare("mnist", str(tmp_path / "tfds"), say=lambda _: None)
    msg = str(e.value)
    assert "\n" not in msg and "'mnist'" in msg and "the download failed" in msg
    assert "404" in msg and "check the network" in msg
    assert _nothing_prepared(tmp_path / "tfds", "mnist")


def test_training_with_download_true_fails_in_one_line(tmp_path, stand_in_server, mnist_from):
    """--config.data.download=True goes through the same preparation (issue 33, item 7)."""
    from cnnx.data.sources import get_source
    from tests.data.sections import data_section

    mnist_from(stand_in_server[1])  # every file a 404
    data = data_section("tfds:mnist", data_dir=str(tmp_path), download=True)
    with pytest.raises(DataError, match=r"^Preparing TFDS dataset 'mnist' .* failed: the download"):
        get_source(data)
    _write_mnist(stand_in_server[0], {"train": 12, "t10k": 6})
    source = get_source(data)  # the server is back: the same call prepares it
    assert source.num_classes == 10 and source.num_examples("test") == 6


def test_a_downloadable_dataset_through_a_stand_in_server(tmp_path, stand_in_server, mnist_from):
    root, url = stand_in_server
    _write_mnist(root, {"train": 12, "t10k": 6})
    mnist_from(url)
    data_dir = str(tmp_path / "tfds")
    builder = prepare.prepare("mnist", data_dir, say=lambda _: None)
    assert builder.is_prepared()
    assert {s: builder.info.splits[s].num_examples for s in ("train", "test")} == {
        "train": 12,
        "test": 6,
    }
    labels = [int(ex["label"]) for ex in tfds.as_numpy(builder.as_dataset(split="train"))]
    assert sorted(labels) == sorted(i % 10 for i in range(12))
    flags = prepare.train_flags("mnist", data_dir, builder)
    assert flags == (
        f"--config.data.source=tfds:mnist --config.data.data_dir={data_dir} "
        "--config.data.train_split=train --config.data.eval_split=test"
    )
