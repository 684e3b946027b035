"""ImageNet the way a user walks it (issue 30, item 3): a miniature manual download in TFDS's
real layout (`tests/data/imagenet_manual.py`: one tar per synset, the first validation images
in a shuffled tar, a CMYK JPEG and a PNG named .JPEG), prepared by TFDS's real `imagenet2012`
builder through `python -m cnnx.data.prepare`, its labels checked against TFDS's
`validation_labels.txt`, and a ResNet trained and evaluated on it with train.py."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnx.data.sources import get_source
from tests.data.imagenet_manual import CMYK_FILE, PNG_FILE, class_names, write_manual_dir
from tests.data.sections import data_section

tfds = pytest.importorskip("tensorflow_datasets")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device, as users run
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def _examples(builder, split: str) -> dict[str, dict]:
    """file name -> {'label': synset, 'jpeg': encoded bytes} as the prepared split stores it."""
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    names = builder.info.features["label"].names
    return {
        ex["file_name"].decode(): {"label": names[ex["label"]], "jpeg": ex["image"]}
        for ex in tfds.as_numpy(ds)
    }


@pytest.mark.slow
def test_imagenet_prepared_by_the_real_builder_trains(tmp_path):
    manual, data_dir = str(tmp_path / "manual"), str(tmp_path / "tfds")
    truth = write_manual_dir(manual, num_val=8, per_class=2, size=40)
    leftover = os.path.join(data_dir, "imagenet2012", "incomplete.K1LLED_5.1.0")
    os.makedirs(leftover)  # what a preparation killed outright leaves
    open(os.path.join(leftover, "imagenet2012-train.tfrecord-00000-of-00004"), "wb").close()

    p = _run(["-m", "cnnx.data.prepare", "imagenet2012", f"--data_dir={data_dir}",
              f"--manual_dir={manual}"])  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"Removed {leftover}" in p.stdout and not os.path.exists(leftover)
    assert "(train 18, validation 8 examples; 1000 classes)" in p.stdout, p.stdout
    flags = (
        f"--config.data.source=tfds:imagenet2012 --config.data.data_dir={data_dir} "
        "--config.data.train_split=train --config.data.eval_split=validation"
    )
    assert flags in p.stdout

    # Labels: training by synset tar, validation by TFDS's validation_labels.txt in name order.
    builder = tfds.builder("imagenet2012", data_dir=data_dir)
    train, val = _examples(builder, "train"), _examples(builder, "validation")
    assert {f: e["label"] for f, e in train.items()} == truth["train"]
    assert {f: e["label"] for f, e in val.items()} == truth["val"]
    # cnnx's source reads the same labels, as class indices of TFDS's labels.txt.
    source = get_source(data_section("tfds:imagenet2012", data_dir=data_dir))
    ds = source.dataset("validation", process_index=0, process_count=1, drop_remainder=False,
                        seed=0)  # fmt: skip
    read = sorted(int(ex["label"]) for ex in tfds.as_numpy(ds))
    assert source.num_classes == 1000
    assert read == sorted(class_names().index(s) for s in truth["val"].values())
    # The CMYK and the PNG file are stored as RGB JPEGs, their colour kept.
    for name in (CMYK_FILE, PNG_FILE):
        jpeg = train[name]["jpeg"]
        assert jpeg[:2] == b"\xff\xd8", name
        pixels = Image.open(io.BytesIO(jpeg))
        assert pixels.mode == "RGB", name
        index = class_names().index(truth["train"][name])
        colour = np.array([(index * 37) % 256, (index * 91) % 256, (index * 53) % 256])
        assert np.abs(np.asarray(pixels, np.float64).mean((0, 1)) - colour).max() < 12, name

    # train.py on it: a ResNet-18 at 32 px, a few steps, evaluated on the 8 validation images.
    workdir = str(tmp_path / "wd")
    p = _run([
        "train.py", "--config=configs/resnet.py:18", f"--config.data.data_dir={data_dir}",
        "--config.data.image_size=32", "--config.train.batch_size=6", "--config.eval.batch_size=8",
        "--config.train.num_steps=3", "--config.schedule.warmup_epochs=0",
        "--config.model.dtype=float32", "--config.data.shuffle_buffer=32",
        f"--workdir={workdir}",
    ])  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    assert results["status"] == "completed" and results["step"] == 3, results
    assert results["num_params"] == 11_689_512, results  # ResNet-18 with ImageNet's 1000 classes
    assert results["eval/examples"] == 8, results
