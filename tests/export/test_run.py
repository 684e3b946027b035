"""A workdir's checkpoint read for export (`cnnx.export.run.load_run`): the head size and input
channels read off the checkpoint when config.json does not state them, evaluation's
preprocessing from config.json, and one clear error for each way it can fail."""

import json

import numpy as np
import pytest

from cnnx import models
from cnnx.errors import CheckpointError, CheckpointMismatch, ConfigError
from cnnx.export.run import load_run
from tests.export.workdirs import random_variables, write_workdir
from tests.train.tiny import tiny_config


@pytest.fixture(scope="module")
def lenet_workdir(tmp_path_factory):
    """LeNet-5 on the digits (grey, 10 classes, neither in config.json), with EMA weights."""
    model = models.create("lenet5", num_classes=10)
    raw, ema = (random_variables(model, 32, channels=1, seed=s) for s in (0, 1))
    path = tmp_path_factory.mktemp("lenet")
    write_workdir(path, tiny_config(), raw, step=4, ema=ema)
    return path, raw, ema


def test_head_channels_and_preprocessing_of_a_digits_run(lenet_workdir):
    path, raw, ema = lenet_workdir
    run = load_run(str(path))
    assert json.loads((path / "config.json").read_text())["model"].get("num_classes") is None
    assert run.name == "lenet5" and run.options["num_classes"] == 10 and run.channels == 1
    assert (run.eval_image_size, run.eval_pp, run.mean, run.std) == (
        32,
        "resize|normalize",
        (0.5,),
        (0.5,),
    )
    np.testing.assert_array_equal(
        run.variables["params"]["c1"]["kernel"], raw["params"]["c1"]["kernel"]
    )
    averaged = load_run(str(path), step=4, ema=True)
    np.testing.assert_array_equal(
        averaged.variables["params"]["c1"]["kernel"], ema["params"]["c1"]["kernel"]
    )


def test_errors_say_what_is_wrong(lenet_workdir, tmp_path):
    path, raw, _ = lenet_workdir
    with pytest.raises(ConfigError, match=r"config\.json not found"):
        load_run(str(tmp_path))
    with pytest.raises(CheckpointError, match=r"No checkpoint 7 .* steps there are 4"):
        load_run(str(path), step=7)
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    with pytest.raises(CheckpointError, match="No checkpoint found"):
        load_run(str(tmp_path))
    other = tmp_path / "other"
    write_workdir(other, tiny_config(**{"model.name": "nin_cifar"}), raw)
    with pytest.raises(CheckpointMismatch, match="does not fit nin_cifar"):
        load_run(str(other))
    no_ema = tmp_path / "no_ema"
    write_workdir(no_ema, tiny_config(), raw)
    with pytest.raises(CheckpointError, match="kept no EMA weights"):
        load_run(str(no_ema), ema=True)
