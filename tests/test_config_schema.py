"""The config schema (cnnx/config_schema.py): its registry names, its fields, and that a field
added to it leaves the identity of existing workdirs as it was."""

import json
import os
import shutil

import pytest

from cnnx import config_schema
from cnnx.config_schema import base_config, validate
from cnnx.data.sources import SOURCES
from cnnx.errors import ConfigError
from cnnx.train import losses, optim
from cnnx.train import workdir as wd
from cnnx.train.experiment import resolve_dtype
from tests.test_configs import REPO, load

# config.json files written by train.py at main 7c52fc4, before the schema had
# model.drop_path_rate and model.num_classes: (file, the config that wrote it, its arg).
SAVED = os.path.join(os.path.dirname(__file__), "train", "saved_configs")
SAVED_RUNS = [
    ("default.json", "default.py", None),
    ("efficientnet_b0.json", "efficientnet.py", "b0"),
]


@pytest.mark.parametrize(
    "names,registry",
    [
        (config_schema.OPTIMIZER_NAMES, optim.OPTIMIZERS),
        (config_schema.SCHEDULE_NAMES, optim.SCHEDULES),
        (config_schema.SOURCE_KINDS, SOURCES),
        (config_schema.LOSS_NAMES, losses.LOSSES),
    ],
    ids=["optimizers", "schedules", "sources", "losses"],
)
def test_names_are_the_registries_keys(names, registry):
    assert sorted(names) == sorted(registry)


def test_optional_model_fields_exist_and_are_checked():
    c = base_config()
    assert c.model.drop_path_rate is None and c.model.num_classes is None
    c.lock()
    c.model.drop_path_rate = 0.1  # a locked config accepts them (README: an override)
    c.model.num_classes = 10
    validate(c)
    c.model.drop_path_rate = 1.0
    c.model.num_classes = 0
    with pytest.raises(ConfigError) as e:
        validate(c)
    assert "--config.model.drop_path_rate=1.0 must be a finite number in [0.0, 1.0)" in str(e.value)
    assert "--config.model.num_classes=0 must be an integer >= 1" in str(e.value)


@pytest.mark.parametrize("source", ["digits", "digits:parity", "synthetic", "folder:/x", "tfds:y"])
def test_source_kinds_pass(source):
    c = base_config()
    c.data.source = source
    validate(c)


@pytest.mark.parametrize("source", ["imagenet", "", "Digits", "tf:x"])
def test_unknown_source_kind_names_the_valid_ones(source):
    c = base_config()
    c.data.source = source
    with pytest.raises(ConfigError, match=r"'digits'.*'synthetic', 'folder:<path>' or 'tfds"):
        validate(c)


@pytest.mark.parametrize("saved,config,arg", SAVED_RUNS, ids=[s for s, _, _ in SAVED_RUNS])
def test_a_workdir_saved_before_new_fields_is_the_same_run(tmp_path, saved, config, arg):
    """Fields added to the schema since a run wrote its config.json take their defaults there,
    so the same command continues the run, and eval.py reads the same values back."""
    shutil.copy(os.path.join(SAVED, saved), wd.config_path(str(tmp_path)))
    config = load(os.path.join(REPO, "configs", config), arg)
    old = json.loads((tmp_path / "config.json").read_text())
    assert "drop_path_rate" in config.model and "num_classes" in config.model
    assert wd.config_changes(old, config) == {}
    assert wd.check_same_run(str(tmp_path), config) == {}
    # model.dtype 'auto' (the default since) means the run's recorded dtype.
    config, _ = resolve_dtype(config, old)
    assert wd.load_config(str(tmp_path)).to_dict() == config.to_dict()
    # A changed identity key is still a change.
    config.model.width_mult = 0.5
    assert wd.config_changes(old, config) == {"model.width_mult": (1.0, 0.5)}
    config.model.width_mult, config.model.dtype = 1.0, "bfloat16"  # asked for: a change
    assert wd.config_changes(old, config) == {"model.dtype": ("float32", "bfloat16")}


def test_unknown_loss_names_the_valid_ones():
    c = base_config()
    c.train.loss = "focal"
    with pytest.raises(ConfigError) as e:
        validate(c)
    assert "--config.train.loss='focal' must be one of 'softmax_xent', 'sigmoid_xent'" in str(
        e.value
    )
