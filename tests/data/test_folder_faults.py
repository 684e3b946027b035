"""Image folders as users leave them (issue 33 item 5): a link loop, file names that are not
UTF-8, a single class, a decompression bomb, and camera photos with an EXIF orientation."""

import io
import logging
import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cnnx.data import get_source
from cnnx.data.image_header import MAX_IMAGE_PIXELS, pixels
from cnnx.data.pipeline import EvalInput
from cnnx.data.pp import decode
from cnnx.errors import DataError
from tests.data.sections import data_section
from tests.data.test_folder import _ctx, _make, _png


def _eval_count(src) -> int:
    """How many examples one evaluation pass uses."""
    return int(sum(b["mask"].sum() for b in EvalInput(src, "all", "resize", _ctx(), 8).iterate()))


def test_a_link_loop_reads_each_folder_once(tmp_path, caplog):
    # ant/deeper/loop -> ant: os.walk(followlinks=True) used to read ant ~40 times.
    root = _make(tmp_path, {"ant": 3, "cow": 3})
    os.makedirs(root / "ant" / "deeper")
    os.symlink(root / "ant", root / "ant" / "deeper" / "loop")
    caplog.set_level(logging.WARNING)
    src = get_source(data_section(f"folder:{root}"))
    assert src.num_examples("all") == 6
    assert any("through a link" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("target", ["cow", "."])
def test_a_link_into_another_class_or_the_root_is_refused(tmp_path, target):
    # ant/loop -> ../cow (or -> ..) used to read cow's images a second time, labelled ant.
    root = _make(tmp_path, {"ant": 3, "cow": 3})
    os.symlink(os.path.join("..", target), root / "ant" / "loop")
    with pytest.raises(DataError, match=r"ant/loop is a link to .*read under class 'ant'"):
        get_source(data_section(f"folder:{root}")).num_examples("all")


def test_a_class_folder_that_links_to_another_class_is_refused(tmp_path):
    root = _make(tmp_path, {"ant": 3})
    os.symlink("ant", root / "cow")
    with pytest.raises(DataError, match=r"'ant' and 'cow' .* are one folder"):
        get_source(data_section(f"folder:{root}")).num_examples("all")


def test_file_names_that_are_not_utf8_are_read_and_named(tmp_path):
    # A Latin-1 name used to crash the run when the file list became a tensor.
    root = _make(tmp_path, {"ant": 2, "cow": 2})
    ant, cow = os.fsencode(root / "ant"), os.fsencode(root / "cow")
    with open(os.path.join(ant, b"caf\xe9.png"), "wb") as f:
        f.write(_png((200, 30, 30)))
    with open(os.path.join(cow, b"bad\xff.png"), "wb") as f:
        f.write(b"not an image")
    src = get_source(data_section(f"folder:{root}"))
    assert _eval_count(src) == 5  # the good Latin-1 file is used, the bad one left out
    (name,) = src.corrupt
    assert name.endswith("bad\\xff.png")  # shown with a backslash escape, printable
    src = get_source(data_section(f"folder:{root}", on_corrupt="error"))
    with pytest.raises(DataError, match=r"bad\\xff\.png \(does not decode"):
        _eval_count(src)


def test_a_class_folder_name_that_is_not_utf8_is_an_error(tmp_path):
    root = _make(tmp_path, {"ant": 1})
    os.makedirs(os.path.join(os.fsencode(tmp_path), b"b\xe9e"))
    with open(os.path.join(os.fsencode(tmp_path), b"b\xe9e", b"0.png"), "wb") as f:
        f.write(_png((1, 2, 3)))
    with pytest.raises(DataError, match=r"b\\xe9e are not UTF-8"):
        get_source(data_section(f"folder:{root}"))


@pytest.mark.parametrize("split_dirs", [True, False])
def test_a_single_class_is_an_error(tmp_path, split_dirs):
    # It trained and reported 100% top-1.
    root = _make(tmp_path, {"train/ant": 2, "test/ant": 1} if split_dirs else {"ant": 2})
    with pytest.raises(DataError, match=r"one class \(ant\); a classifier needs at least two"):
        get_source(data_section(f"folder:{root}"))


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height (its pixel data absent: the header is what counts)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    crc = struct.pack(">I", zlib.crc32(chunk))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + crc


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    # 20000 x 10000 = 200 MP: a small PNG of that size took 8.8 GB to decode, without a word.
    root = _make(tmp_path, {"ant": 2, "cow": 2})
    (root / "cow" / "bomb.png").write_bytes(_png_header(20_000, 10_000) + b"\0" * 64)
    src = get_source(data_section(f"folder:{root}", on_corrupt="error"))
    with pytest.raises(DataError, match=r"bomb\.png \(200 megapixels, above the 179-megapixel"):
        _eval_count(src)


def _encoded(fmt: str, size=(37, 23), mode="RGB", **kw) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (10, 20, 30) if mode == "RGB" else (10, 20, 30, 40)).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    "fmt, mode, kw",
    [
        ("JPEG", "RGB", {}),
        ("PNG", "RGB", {}),
        ("GIF", "RGB", {}),
        ("BMP", "RGB", {}),
        ("WEBP", "RGB", {}),  # VP8
        ("WEBP", "RGB", {"lossless": True}),  # VP8L
        ("WEBP", "RGBA", {}),  # VP8X (alpha)
    ],
)
def test_the_header_pixel_count_of_every_format_decode_image_reads(fmt, mode, kw):
    assert int(pixels(tf.constant(_encoded(fmt, mode=mode, **kw)))) == 37 * 23
    assert int(pixels(tf.constant(b"not an image"))) == 0
    assert MAX_IMAGE_PIXELS == 2 * Image.MAX_IMAGE_PIXELS  # Pillow's DecompressionBombError


def test_exif_orientation_is_not_applied(tmp_path):
    # Documented choice (folder.py), as torchvision's ImageFolder and TFDS: decoded as stored.
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    stored = Image.new("RGB", (16, 8), (90, 120, 40))
    buf = io.BytesIO()
    stored.save(buf, "JPEG", exif=exif.tobytes())
    image = decode(tf.constant(buf.getvalue()), 3)
    assert image.shape == (8, 16, 3)
    np.testing.assert_allclose(np.asarray(image).mean(axis=(0, 1)), (90, 120, 40), atol=2)
