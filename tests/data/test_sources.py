"""Data sources: digits, synthetic, image folders, TFDS (mocked) and their errors."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cnnx.data.sources import get_source, parse_split, process_slice
from cnnx.errors import ConfigError, DataError
from tests.data.sections import data_section, mock_tfds

SPLITS = [
    ("train", ("train", ("", ""))),
    ("train[:90%]", ("train", ("", "90%"))),
    ("test[10:20]", ("test", ("10", "20"))),
]


@pytest.mark.parametrize("split,expected", SPLITS, ids=[s for s, _ in SPLITS])
def test_parse_split(split, expected):
    assert parse_split(split) == expected


def test_process_slices_cover_everything_once():
    for n in (10, 11, 13):
        parts = [process_slice(n, i, 3, drop_remainder=False) for i in range(3)]
        assert sorted(i for p in parts for i in p) == list(range(n))
        kept = [process_slice(n, i, 3, drop_remainder=True) for i in range(3)]
        assert len({len(p) for p in kept}) == 1


def test_digits_splits_are_disjoint_and_fixed():
    s = get_source(data_section("digits"))
    assert s.num_classes == 10
    assert s.num_examples("train") + s.num_examples("test") == 1797
    assert s.num_examples("test[:100]") == 100
    a = next(
        iter(s.dataset("test", process_index=0, process_count=1, drop_remainder=False, seed=0))
    )
    b = next(
        iter(
            get_source(data_section("digits")).dataset(
                "test", process_index=0, process_count=1, drop_remainder=False, seed=0
            )
        )
    )
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["image"].shape == (8, 8, 1) and a["image"].dtype == tf.uint8
    with pytest.raises(ConfigError, match="no split"):
        s.num_examples("validation")


def _write_folder(root, split_dirs=True, n_per_class=3, fmt="JPEG"):
    rng = np.random.RandomState(0)
    for split in ("train", "val") if split_dirs else ("",):
        for cls in ("cat", "dog"):
            d = root / split / cls if split else root / cls
            d.mkdir(parents=True)
            for i in range(n_per_class):
                arr = rng.randint(0, 255, size=(20 + i, 30, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i}.{fmt.lower()}", fmt)
    return root


def test_folder_source_reads_split_folders(tmp_path):
    s = get_source(data_section(f"folder:{_write_folder(tmp_path)}"))
    assert s.num_classes == 2 and s.classes == ["cat", "dog"]
    assert s.num_examples("train") == 6 and s.num_examples("val") == 6
    ds = s.dataset("train", process_index=0, process_count=1, drop_remainder=False, seed=0)
    examples = [s.load(e) for e in ds]
    assert sorted(int(e["label"]) for e in examples) == [0, 0, 0, 1, 1, 1]
    assert tf.image.decode_image(examples[0]["image"]).shape[-1] == 3


def test_folder_without_split_folders_has_split_all(tmp_path):
    s = get_source(data_section(f"folder:{_write_folder(tmp_path, split_dirs=False, fmt='PNG')}"))
    assert s.num_examples("all") == 6
    assert s.num_examples("all[:50%]") == 3


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        get_source(data_section(f"folder:{tmp_path / 'nope'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        get_source(data_section(f"folder:{tmp_path / 'empty'}"))


def test_unknown_source():
    with pytest.raises(ConfigError, match="Unknown data source"):
        get_source(data_section("imagenet"))


def test_tfds_source_with_mock_data():
    with mock_tfds(num_examples=12):
        s = get_source(data_section("tfds:mnist"))
        assert s.num_classes == 10
        assert s.num_examples("train") == 12
        ds = s.dataset("train", process_index=0, process_count=1, drop_remainder=True, seed=0)
        ex = next(iter(ds))
        assert ex["image"].dtype == tf.string  # decoding happens in preprocessing
        assert ex["label"].dtype == tf.int32


def test_unprepared_manual_tfds_dataset_names_the_steps(tmp_path):
    with pytest.raises(DataError) as e:
        get_source(data_section("tfds:imagenet2012", data_dir=str(tmp_path)))
    msg = str(e.value)
    assert "imagenet2012" in msg and str(tmp_path) in msg
    assert "manual" in msg and "ILSVRC2012_img_train.tar" in msg
    assert f"python -m cnnx.data.prepare imagenet2012 --data_dir={tmp_path}" in msg


def test_unprepared_downloadable_tfds_dataset(tmp_path):
    with pytest.raises(DataError, match="download=True") as e:
        get_source(data_section("tfds:mnist", data_dir=str(tmp_path)))
    assert f"python -m cnnx.data.prepare mnist --data_dir={tmp_path}" in str(e.value)
