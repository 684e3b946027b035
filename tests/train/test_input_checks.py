"""Data against model: mismatches caught before training (issue 16 items 3 and 4)."""

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from cnnx.data import sources
from cnnx.errors import ConfigError, DataError
from cnnx.train import experiment
from tests.data.sections import mock_tfds
from tests.models.helpers import unused_positions
from tests.train.tiny import tiny_config

# --- Class counts: one decision, from the data ----------------------------------------------


def _image_folder(root, classes=("ant", "bee", "cow"), n=2):
    for c in classes:
        os.makedirs(root / c, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (10, 10), (40 * i, 90, 20)).save(root / c / f"{i}.png")
    return f"folder:{root}"


def _source_overrides(kind: str, tmp_path) -> dict:
    """Config overrides for one source kind, and how many classes that data has."""
    if kind == "digits":
        return {"data.source": "digits"}, 10
    if kind == "synthetic":
        return {"data.source": "synthetic", "data.num_classes": 4}, 4
    if kind == "folder":
        return {"data.source": _image_folder(tmp_path / "imgs"), "data.channels": 3}, 3
    if kind == "tfds":
        return {"data.source": "tfds:mnist"}, 10
    raise ValueError(kind)


SOURCE_KINDS = ["digits", "synthetic", "folder", "tfds"]


@pytest.mark.parametrize("kind", SOURCE_KINDS)
@pytest.mark.parametrize("delta", [-1, +2], ids=["smaller_head", "larger_head"])
def test_head_size_other_than_the_data_is_refused(kind, delta, tmp_path):
    # model.num_classes=5 on 10-class digits used to train silently: labels 5-9 got all-zero
    # targets and a loss of 0.
    overrides, have = _source_overrides(kind, tmp_path)
    head = have + delta
    config = tiny_config(**overrides, **{"model.num_classes": head})
    with mock_tfds(num_examples=8), pytest.raises(ConfigError) as e:
        experiment.setup(config)
    msg = str(e.value)
    assert f"model.num_classes={head}" in msg and f"has {have} classes" in msg
    assert "Leave model.num_classes unset" in msg


@pytest.mark.parametrize("kind", ["digits", "folder", "tfds"])
def test_data_num_classes_on_real_data_is_refused(kind, tmp_path):
    # --config.data.num_classes=5 on digits was silently ignored.
    overrides, have = _source_overrides(kind, tmp_path)
    config = tiny_config(**overrides, **{"data.num_classes": have - 1})
    want = rf"data.num_classes={have - 1}.*has {have} classes"
    with mock_tfds(num_examples=8), pytest.raises(ConfigError, match=want):
        experiment.setup(config)


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_matching_or_unset_class_counts_are_accepted(kind, tmp_path):
    overrides, have = _source_overrides(kind, tmp_path)
    with mock_tfds(num_examples=8):
        for extra in ({}, {"model.num_classes": have}):
            exp = experiment.setup(tiny_config(**overrides, **extra))
            assert exp.model.num_classes == exp.source.num_classes == have


def test_synthetic_data_takes_the_heads_class_count():
    exp = experiment.setup(tiny_config(**{"data.source": "synthetic", "model.num_classes": 7}))
    assert exp.source.num_classes == exp.model.num_classes == 7
    assert exp.source.labels["train"].max() == 6


def _mismatched():
    return tiny_config(**{"model.num_classes": 5})


def _train(tmp_path):
    from cnnx.train import loop

    loop.train_and_evaluate(_mismatched(), str(tmp_path / "run"))


def _eval_workdir(tmp_path):
    # eval.py on a workdir: the saved config (here a 5-class head) against other data.
    from cnnx import checkpoint_eval
    from cnnx.train.workdir import load_config

    workdir = tmp_path / "run"
    os.makedirs(workdir)
    (workdir / "config.json").write_text(json.dumps(_mismatched().to_dict()))
    config = load_config(str(workdir))
    checkpoint_eval.restore_state(config, str(workdir))


def _fixres(tmp_path):
    from cnnx.sweeps import fixres

    fixres.evaluate_at(_mismatched(), {}, 32)


def _linear_probe(tmp_path):
    from cnnx.train import linear_probe

    config = _mismatched()
    config.init.checkpoint = str(tmp_path / "pretrained")
    linear_probe.run(config, str(tmp_path / "probe"))


def _finetune_reset_head(tmp_path):
    from cnnx.train import loop

    config = _mismatched()
    config.init.checkpoint = str(tmp_path / "pretrained")
    config.init.reset_head = True
    loop.train_and_evaluate(config, str(tmp_path / "ft"))


ENTRY_POINTS = {
    "train": _train,
    "eval_workdir": _eval_workdir,
    "fixres": _fixres,
    "linear_probe": _linear_probe,
    "finetune_reset_head": _finetune_reset_head,
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_entry_point_refuses_a_head_that_does_not_match_the_data(entry, tmp_path):
    with pytest.raises(ConfigError, match=r"model.num_classes=5, but digits has 10 classes"):
        ENTRY_POINTS[entry](tmp_path)
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_in_memory_labels_outside_the_classes_are_refused():
    images = {"train": np.zeros((4, 8, 8, 1), np.uint8)}
    with pytest.raises(DataError, match=r"Labels 10 in split 'train' of mine.*0-9"):
        sources.ArraySource("mine", 10, images, {"train": np.array([0, 3, 10, 9])})
    with pytest.raises(DataError, match=r"Labels -1 .*unlabelled"):
        sources.ArraySource("mine", 10, images, {"train": np.array([0, -1, 1, 2])})


def test_pipeline_refuses_labels_outside_the_classes():
    # Labels that reach the pipeline unchecked (TFDS, folders) are checked on the host before
    # the step sees them: a label >= num_classes never becomes a silent all-zero target.
    from cnnx.train import build

    exp = experiment.setup(tiny_config())
    exp.source.labels["train"] = exp.source.labels["train"] + 1  # labels 1-10 of 10 classes
    with pytest.raises(DataError, match=r"Labels 10 in split 'train' of digits"):
        next(build.make_train_input(exp).iterate(0))
    exp.source.labels["test"] = exp.source.labels["test"] + 1
    with pytest.raises(DataError, match=r"Labels 10 in split 'test\[:100\]' of digits"):
        next(iter(build.make_eval_input(exp).iterate()))


# --- Pixels the model never sees -------------------------------------------------------------


def test_vit_at_40_px_is_refused_before_compiling(tmp_path, monkeypatch):
    # vit_ti_16 at 40 px used to train on the first 32 rows and columns only (patches of 16):
    # changing the last 8 changed no logit.
    from cnnx.train import build, loop

    def compiled(*args, **kwargs):
        raise AssertionError("the state was initialised (compiled) before the config error")

    monkeypatch.setattr(build, "init_state", compiled)
    config = tiny_config(**{"model.name": "vit_ti_16", "data.image_size": 40})
    with pytest.raises(ConfigError) as e:
        loop.train_and_evaluate(config, str(tmp_path))
    msg = str(e.value)
    assert "vit_ti_16 at 40x40 px never uses the last 8 rows (rows 32-39)" in msg
    assert "the last 8 columns" in msg and "e.g. 32 or 48" in msg
    assert not os.path.exists(tmp_path / "checkpoints")


# (model, size, unused trailing rows): one per family with a patch, window, pooling or
# VALID-stride constraint, through check_input_size (message and suggestions); costlier traces:
# tests/models/test_coverage.py.
CROPS = {
    "lenet_pooling": ("lenet5", 33, 1),
    "alexnet_pooling": ("alexnet", 226, 1),
    "alexnet_valid_stride4": ("alexnet_original", 230, 3),
    "zfnet": ("zfnet", 227, 1),
    "nin": ("nin", 226, 3),
    "vit_patch": ("vit_ti_16", 40, 8),
}


def _model(name, **kw):
    from cnnx import models

    spec = models.get_spec(name)
    return spec, models.create(name, num_classes=10, **kw)


@pytest.mark.parametrize("case", list(CROPS))
def test_sizes_a_family_would_crop_are_refused(case):
    name, size, n = CROPS[case]
    spec, model = _model(name)
    rows = f"row \\(row {size - 1}" if n == 1 else rf"{n} rows \(rows {size - n}-"
    want = rf"{name} at {size}x{size} px never uses the last {rows}"
    with pytest.raises(ConfigError, match=want) as e:
        experiment.check_input_size(spec, model, spec.in_chans, size)
    suggested = [int(s) for s in re.findall(r"e\.g\. (\d+)(?: or (\d+))?", str(e.value))[0] if s]
    assert suggested and suggested[0] == size - n
    experiment.check_input_size(spec, model, spec.in_chans, *suggested)  # they are fine


def test_crops_are_found_when_convolutions_run_on_onednn(monkeypatch):
    """The check reads convolutions from the jaxpr; oneDNN's FFI calls must not hide them
    (before: a one-device CPU run traced AlexNet's convolutions as opaque calls, every pixel
    counted as used, and the 230 px crop below passed silently)."""
    from cnnx.backends.cpu import onednn

    if not onednn.available():
        pytest.skip(onednn.status())
    monkeypatch.setenv(onednn.SWITCH, "on")
    name, size, n = CROPS["alexnet_valid_stride4"]
    spec, model = _model(name)
    with pytest.raises(ConfigError, match=f"never uses the last {n} rows"):
        experiment.check_input_size(spec, model, spec.in_chans, size)


def test_a_band_the_reference_drops_too_is_accepted():
    # NIN's stride-4 VALID stem leaves the last row of its own 224 px input unused (as the
    # reference does): that band, not a wider one, is accepted at other sizes too.
    spec, model = _model("nin")
    assert unused_positions(model, 228)[1].sum() == 1
    experiment.check_input_size(spec, model, 3, 224, 228)
    with pytest.raises(ConfigError, match="nin at 226x226 px never uses the last 3 rows"):
        experiment.check_input_size(spec, model, 3, 226)


def test_evaluation_at_another_size_is_checked_too():
    # eval.py --image_size and FixRes build their inputs at sizes the config does not name.
    from cnnx.train import build

    exp = experiment.setup(tiny_config())
    with pytest.raises(ConfigError, match=r"lenet5 at 33x33 px never uses the last row \(row 32\)"):
        build.make_eval_input(exp, image_size=33)
    assert build.make_eval_input(exp, image_size=36).ctx.image_size == 36


def _registry_cases():
    """Every registered model at each of its registered resolutions, one representative per
    layer geometry: variants that differ only in widths, repeat counts or heads share their
    strides, kernels and patches (a trace of a large model takes seconds)."""
    from cnnx import models

    shape_only = set(
        str.split(
            """dims depths stage_sizes block_config depth num_layers hidden_dim mlp_dim num_heads
        embed_dim width_mult depth_mult growth_rate num_init_features groups
        width_per_group base_width inplanes dropout_rate drop_path_rate bn_epsilon
        bn_momentum num_features num_cells partial_c3 lrn batch_norm aux_logits"""
        )
    )
    seen, cases = set(), []
    for name in models.list_models():
        spec = models.get_spec(name)
        geometry = sorted((k, repr(v)) for k, v in spec.kwargs.items() if k not in shape_only)
        geometry = tuple(geometry)
        for size in sorted({spec.resolution, spec.eval_resolution}):
            if (spec.family, geometry, size) not in seen:
                seen.add((spec.family, geometry, size))
                cases.append(pytest.param(name, size, id=f"{name}@{size}"))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("name,size", _registry_cases())
def test_registry_resolutions_use_every_pixel(name, size):
    # check_input_size skips these sizes for models built as registered: this is why.
    spec, model = _model(name)
    experiment.check_input_size(spec, model, spec.in_chans, size)
