"""The folder source: one class map for every split, subfolders, empty classes, and files that
cannot be read (named, counted, never relabelled) against files that can (issue 16.5, 16.6)."""

import io
import logging
import os

import numpy as np
import pytest
from PIL import Image

from cnnx.data import PPContext, get_source
from cnnx.data.pipeline import EvalInput, TrainInput
from cnnx.errors import DataError
from tests.data.sections import data_section

# One flat colour per class, so an example's label can be checked against its pixels.
COLOURS = {"ant": (200, 30, 30), "bee": (30, 200, 30), "cow": (30, 30, 200)}


def _png(colour, size=(12, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(colour=(90, 120, 40), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).convert(mode).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _make(root, layout: dict[str, int], sub: str = ""):
    """layout: 'split/class' (or 'class') -> number of images; `sub`: a subfolder for them."""
    for folder, n in layout.items():
        cls = folder.split("/")[-1]
        d = root / folder / sub
        os.makedirs(d, exist_ok=True)
        for i in range(n):
            (d / f"{i}.png").write_bytes(_png(COLOURS.get(cls, (128, 128, 128)), (12 + i, 12)))
    return root


def test_classes_come_from_train_and_every_split_uses_them(tmp_path):
    # train/{ant,bee,cow} + test/{ant,cow} used to give 2 classes (from the alphabetically
    # first split, test/) and drop every train/bee image.
    layout = {"train/ant": 2, "train/bee": 2, "train/cow": 2, "test/ant": 1, "test/cow": 1}
    root = _make(tmp_path, layout)
    src = get_source(data_section(f"folder:{root}"))
    assert src.num_classes == 3 and list(src.classes) == ["ant", "bee", "cow"]
    assert sorted(c for _, c in src.files["train"]) == [0, 0, 1, 1, 2, 2]
    assert {os.path.basename(os.path.dirname(p)): c for p, c in src.files["test"]} == {
        "ant": 0,
        "cow": 2,
    }


def test_an_evaluation_class_that_train_lacks_is_an_error(tmp_path):
    # Its validation images used to leave the evaluation silently.
    root = _make(tmp_path, {"train/ant": 1, "train/cow": 1, "val/ant": 1, "val/bee": 1})
    with pytest.raises(DataError, match=r"val/ has class folder\(s\) bee that train/ lacks"):
        get_source(data_section(f"folder:{root}"))


def test_images_in_subfolders_of_a_class_are_found(tmp_path):
    # A class whose images sit one level down used to train on nothing.
    root = _make(tmp_path, {"ant": 2, "bee": 3}, sub="batch1/deeper")
    src = get_source(data_section(f"folder:{root}"))
    assert src.num_examples("all") == 5
    assert sorted(c for _, c in src.files["all"]) == [0, 0, 1, 1, 1]


@pytest.mark.parametrize("split_dirs", [True, False])
def test_an_empty_class_folder_is_an_error(tmp_path, split_dirs):
    layout = {"ant": 1, "bee": 0, "cow": 1}
    if split_dirs:
        layout = {f"train/{c}": n for c, n in layout.items()} | {"test/ant": 1}
    root = _make(tmp_path, layout)
    with pytest.raises(DataError, match=r"class folder\(s\) bee hold no image"):
        get_source(data_section(f"folder:{root}"))


def test_hidden_folders_are_no_class_and_stray_folders_beside_splits_are_an_error(tmp_path):
    root = _make(tmp_path / "a", {"ant": 1, "cow": 1, ".ipynb_checkpoints": 1})
    assert get_source(data_section(f"folder:{root}")).num_classes == 2
    root = _make(tmp_path / "b", {"train/ant": 1, "valid/ant": 1})
    with pytest.raises(DataError, match=r"mixes split folders .*valid"):
        get_source(data_section(f"folder:{root}"))


# --- Files that can or cannot be read ---------------------------------------------------


def _ctx(channels=3, size=8):
    return PPContext(size, channels=channels, mean=(0.5,) * channels, std=(0.5,) * channels)


def _train_labels_and_colours(src, channels=3, pp="resize"):
    """(label, mean pixel) of every example of one training epoch."""
    inp = TrainInput(src, "all", pp, _ctx(channels), global_batch=4, shuffle_buffer=64)
    out = []
    for batch in inp.iterate(0):
        out += list(zip(batch["label"], batch["image"].mean(axis=(1, 2))))
        if len(out) >= inp.steps_per_epoch * 4:
            return out, inp


def test_a_complete_jpeg_with_appended_data_is_used(tmp_path):
    # Phones append data after a JPEG's end marker; TF and PIL decode such files, but the old
    # end-marker check (last 1 KB) called them corrupt and skipped them.
    root = _make(tmp_path, {"ant": 3, "cow": 3})
    tail = np.random.RandomState(0).randint(0, 255, 2048, np.uint8).tobytes()
    (root / "ant" / "phone.jpg").write_bytes(_jpeg(COLOURS["ant"]) + tail)
    src = get_source(data_section(f"folder:{root}"))
    _, inp = _train_labels_and_colours(src)
    ev = EvalInput(src, "all", "resize", _ctx(), global_batch=8)
    masks = np.concatenate([b["mask"] for b in ev.iterate()])
    assert masks.sum() == 7 and not src.corrupt and inp.steps_per_epoch == 1


def test_an_unreadable_training_file_is_replaced_by_an_example_with_its_own_label(tmp_path):
    # It used to be replaced by the folder's first image *with that image's label*, biasing
    # training toward one class. Now: the next example of the epoch, label included; counted.
    root = _make(tmp_path, {"ant": 6, "bee": 6, "cow": 6})
    jpg = _jpeg()
    (root / "bee" / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (root / "cow" / "markers_ok.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x13" * 300 + b"\xff\xd9")
    src = get_source(data_section(f"folder:{root}"))
    examples, inp = _train_labels_and_colours(src)
    assert len(examples) == inp.steps_per_epoch * 4 == 20  # the epoch keeps its length
    for label, pixel in examples:
        assert np.allclose(pixel, COLOURS[src.classes[label]], atol=1), (label, pixel)
    assert sorted(map(os.path.basename, src.corrupt)) == ["markers_ok.jpg", "truncated.jpg"]


def test_unreadable_files_are_named_and_follow_on_corrupt(tmp_path, caplog):
    root = _make(tmp_path, {"ant": 3, "cow": 3})
    # Intact JPEG markers around garbage: it used to pass the check and then stop the run
    # with a decode error naming no file.
    (root / "cow" / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x13" * 300 + b"\xff\xd9")
    caplog.set_level(logging.WARNING)
    src = get_source(data_section(f"folder:{root}"))
    ev = EvalInput(src, "all", "resize", _ctx(), global_batch=8)
    batches = list(ev.iterate())
    assert sum(b["mask"].sum() for b in batches) == 6  # left out of the evaluation
    assert list(src.corrupt) == [str(root / "cow" / "garbage.jpg")]
    logged = [r.getMessage() for r in caplog.records]
    assert any("garbage.jpg" in m and "does not decode" in m for m in logged)

    src = get_source(data_section(f"folder:{root}", on_corrupt="error"))
    with pytest.raises(DataError, match=r"garbage\.jpg \(does not decode.*on_corrupt=skip"):
        list(EvalInput(src, "all", "resize", _ctx(), global_batch=8).iterate())


def test_a_folder_of_unreadable_files_stops_training(tmp_path):
    root = tmp_path / "bad"
    for c in ("ant", "cow"):
        os.makedirs(root / c)
        for i in range(4):
            (root / c / f"{i}.jpg").write_bytes(b"not an image")
    src = get_source(data_section(f"folder:{root}"))
    with pytest.raises(DataError, match=r"3 consecutive examples .* are unreadable"):
        _train_labels_and_colours(src)


@pytest.mark.parametrize("pp", ["resize", "inception_crop"])
def test_a_cmyk_jpeg_is_read_by_a_one_channel_model(tmp_path, pp):
    # It stopped the run with "Unsupported color conversion request", naming no file.
    root = _make(tmp_path, {"ant": 2, "cow": 2})
    (root / "ant" / "cmyk.jpg").write_bytes(_jpeg(COLOURS["ant"], mode="CMYK"))
    src = get_source(data_section(f"folder:{root}"))
    examples, _ = _train_labels_and_colours(src, channels=1, pp=pp)
    assert len(examples) == 4 and not src.corrupt
    ev = EvalInput(src, "all", "resize", _ctx(channels=1), global_batch=8)
    assert sum(b["mask"].sum() for b in ev.iterate()) == 5 and not src.corrupt


def test_resume_is_exact_with_an_unreadable_file(tmp_path):
    # Stand-ins are chosen from the epoch's order before the resume point is skipped, so a
    # run resumed at any step sees the batches an uninterrupted one sees.
    root = _make(tmp_path, {"ant": 8, "bee": 8})
    (root / "bee" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    src = get_source(data_section(f"folder:{root}"))
    inp = TrainInput(src, "all", "inception_crop|flip", _ctx(), global_batch=4, seed=7)
    spe = inp.steps_per_epoch
    it = inp.iterate(0)
    full = [next(it) for _ in range(2 * spe)]
    assert list(map(os.path.basename, src.corrupt)) == ["broken.jpg"]
    for start in (1, spe - 1, spe + 2):
        it = inp.iterate(start)
        for want in full[start:]:
            got = next(it)
            np.testing.assert_array_equal(got["image"], want["image"])
            np.testing.assert_array_equal(got["label"], want["label"])
