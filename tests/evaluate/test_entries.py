"""Evaluators as config entries: the registry, the schema's one-line errors and the resolution
of an entry against the run's config (issue 28 items 1 and 5)."""

import json

import pytest

from cnnx.config_schema import base_config
from cnnx.errors import ConfigError
from cnnx.evaluate import entries, registry
from cnnx.evaluate.entries import evaluator


def test_the_registry_and_the_schema_name_the_same_types():
    assert set(registry.EVALUATORS) == set(entries.EVALUATOR_OPTIONS) == {"classification"}


def test_an_unknown_type_or_field_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"type 'detection'; use one of \['classification'\]"):
        evaluator("detection")
    with pytest.raises(ConfigError) as e:
        evaluator(data={"spilt": "test"}, every_step=3)
    text = str(e.value)
    assert "every_step" in text and "data.spilt" in text
    assert "data.{source, data_dir, split, pp, image_size, crop_pct}" in text
    assert "options.{per_class, labels, class_subset}" in text


def _config(**evals):
    c = base_config()
    for name, e in evals.items():
        c.evals[name] = e
    return c


def test_check_reports_every_bad_entry_in_one_error():
    bad_type = evaluator()
    bad_type.type = "segmentation"
    unknown_key = evaluator()
    unknown_key.data.resolution = 224  # ConfigDicts made in a config file are not locked
    both = evaluator(every_steps=10, every_epochs=1.0)
    values = evaluator(every_steps=-1, options={"labels": "multi", "class_subset": "imagenet_b"})
    config = _config(a=bad_type, b=unknown_key, c=both, d=values, train=evaluator())
    with pytest.raises(ConfigError) as e:
        entries.check(config)
    text = str(e.value)
    assert text.count("\n") == 0 and text.startswith("Invalid evaluator entries: ")
    assert "--config.evals.a.type='segmentation' must be one of ['classification']" in text
    assert "--config.evals.b.data.resolution is unknown: a 'classification' evaluator has" in text
    assert "--config.evals.c: set every_steps or every_epochs, not both" in text
    assert "--config.evals.d.every_steps=-1 must be an integer >= 0 (0: after the last" in text
    assert "options.labels='multi' must be 'single' or 'real'" in text
    assert "options.class_subset='imagenet_b' must be" in text
    assert "--config.evals.train: an evaluator's name" in text
    entries.check(_config(v2=evaluator(data={"source": "tfds:imagenet_v2"}, every_epochs=0.5)))


def test_the_run_setup_refuses_a_bad_entry_before_anything_is_built():
    from cnnx.train.experiment import setup

    config = _config(v2=evaluator(data={"source": "mnist"}))
    with pytest.raises(ConfigError, match=r"evals.v2.data.source='mnist' must be 'digits'"):
        setup(config)


def test_resolution_fills_in_the_runs_values():
    c = base_config()
    c.data.source, c.data.eval_split, c.data.eval_pp = "digits", "test[:50]", "resize|normalize"
    c.eval.every_steps = 7
    c.evals.v2 = evaluator(
        data={"source": "tfds:imagenet_v2/topimages", "split": "test", "crop_pct": 1.0},
        every_epochs=0.5,
        options={"per_class": True},
    )
    c.evals.eval = evaluator(options={"per_class": True})  # changes the default's options
    default, v2 = entries.resolve(c)
    assert (default.name, default.split, default.pp, default.every_steps) == (
        "eval",
        "test[:50]",
        "resize|normalize",
        7,
    )
    assert default.options["per_class"] and not default.own_source
    assert default.every(100) == 7
    assert v2.own_source and v2.data["source"] == "tfds:imagenet_v2/topimages"
    assert v2.data["eval_split"] == "test[:50]"  # the rest of the run's data section
    assert (v2.split, v2.pp, v2.crop_pct, v2.image_size) == ("test", "resize|normalize", 1.0, None)
    assert v2.every_steps is None and v2.every(100) == 50 and v2.every(1) == 1
    assert entries.resolve(_config(end=evaluator(every_steps=0)))[1].every(100) == 0
    # Without entries: one evaluator, the run's eval split, once per epoch by default.
    (only,) = entries.resolve(base_config())
    assert only.name == "eval" and only.every(33) == 33 and only.split == "test"


def test_resolution_by_name_keeps_the_order_asked_and_names_the_valid_ones():
    c = _config(v2=evaluator(), sketch=evaluator())
    assert [e.name for e in entries.resolve(c)] == ["eval", "sketch", "v2"]
    assert [e.name for e in entries.resolve(c, ["v2", "eval"])] == ["v2", "eval"]
    with pytest.raises(
        ConfigError, match=r"no evaluator 'real' in this config; it has eval, "
    ) as e:
        entries.resolve(c, ["v2", "real"])
    assert "eval.py also runs the named test sets v2_matched, v2_threshold, " in str(e.value)


def test_eval_py_adds_the_named_test_sets_a_config_did_not_declare():
    from cnnx.evaluate.named_sets import IMAGENET_TEST_SETS, with_named_sets

    c = _config(small=evaluator(data={"split": "test[:40]"}))
    c.evals.real = evaluator(data={"split": "validation[:10]"}, options={"labels": "real"})
    added = with_named_sets(c, ["v2_top", "small", "real", "imagenet_r", "nothing"])
    assert "v2_top" not in c.evals  # a copy
    assert sorted(added.evals) == ["imagenet_r", "real", "small", "v2_top"]
    assert added.evals.real.data.split == "validation[:10]"  # the config's own entry stays
    by_name = {e.name: e for e in entries.resolve(added, ["v2_top", "imagenet_r"])}
    assert by_name["v2_top"].data["source"] == "tfds:imagenet_v2/topimages"
    assert by_name["v2_top"].split == "test" and by_name["v2_top"].every(100) == 0
    assert by_name["imagenet_r"].options["class_subset"] == "imagenet_r"
    assert len(IMAGENET_TEST_SETS) == 7
    with pytest.raises(ConfigError, match=r"no evaluator 'nothing' in this config"):
        entries.resolve(added, ["nothing"])


def test_a_sweep_optimises_any_evaluators_metric(tmp_path):
    from cnnx.sweeps import report
    from cnnx.sweeps.spec import _check_metric

    base = _config(v2=evaluator())
    for metric in ("eval/top1", "v2/ece", "v2_ema/top1", "train/loss"):
        _check_metric("s.py", metric, base)
    with pytest.raises(ConfigError, match=r"'real/top1' is no metric.*\['eval', 'v2'\]"):
        _check_metric("s.py", "real/top1", base)
    assert report.metric_label("v2/ece") == "Expected calibration error on v2 (%, 15 bins)"
    # A trial's record (results.json's numbers) is scored by that metric.
    from cnnx.sweeps.study import _store, load_optuna

    study = load_optuna().create_study(direction="minimize")
    for ece in (4.5, 3.5):
        record = {"status": "completed", "metrics": {"eval/top1": 90.0, "v2/ece": ece}}
        assert _store(study, study.ask(), record, "v2/ece")
    assert study.best_value == 3.5


def test_adding_an_evaluator_to_a_run_keeps_its_identity():
    """Evaluators change what a run reports, not what it computes; but with the plateau
    schedule the 'eval' evaluator decides the learning rate, so changing it is a new run."""
    from cnnx.train.workdir import config_changes

    saved = json.loads(base_config().to_json_best_effort())
    later = _config(v2=evaluator(data={"split": "test[:10]"}, every_steps=5))
    assert config_changes(saved, later) == {}
    plateau = base_config()
    plateau.schedule.name = "plateau"
    saved = json.loads(plateau.to_json_best_effort())
    plateau.evals.eval = evaluator(data={"split": "test[:10]"})
    changes = config_changes(saved, plateau)
    assert changes["evals.eval.data.split"] == ("<unset>", "test[:10]")
    assert all(k.startswith("evals.eval.") for k in changes)
