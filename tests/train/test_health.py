"""Run health: diverging and stuck-at-chance warnings, on metric sequences and end to end."""

import importlib.util
import json
import logging

import pytest

from cnnx.train import health
from cnnx.train.health import RunHealth
from cnnx.train.loop import train_and_evaluate
from tests.analysis.scripts import ROOT, load_script
from tests.train.tiny import tiny_config

CONFIGS = ROOT / "configs"


def _feed(
    losses=(), evals=(), num_classes=10, steps_per_epoch=20, epochs=30, base_lr=0.4, source=None
):
    """A monitor of a run of `epochs` fed one loss per log (every 10 steps) and one eval per
    epoch."""
    monitor = RunHealth(num_classes, steps_per_epoch, epochs * steps_per_epoch, base_lr, source)
    for i, loss in enumerate(losses):
        monitor.add_train(10 * (i + 1), loss)
    for epoch, top1 in enumerate(evals, start=1):
        monitor.add_eval(epoch * steps_per_epoch, {"eval/top1": top1, "eval/examples": 397})
    return monitor


# (train loss per log, eval top-1 per epoch). Measured: the demo, and 1,400 coloured digits
# (scripts/make_color_digits.py) with the default recipe (base_lr 0.1) and with base_lr 0.2.
HEALTHY = {
    "demo": ([0.74, 0.17, 0.12, 0.08, 0.05, 0.04], [90.3, 94.2, 98.3, 98.6, 98.3, 98.6]),
    "slow_start": ([2.41, 2.21, 1.85, 1.27, 0.72, 0.5], [13, 13, 14, 20, 26, 38, 51]),
    "slower_start": ([2.53, 2.43, 2.31, 2.2, 1.95], [8, 16, 10, 8, 12, 13, 14, 18, 21, 29]),
    # Made up: a loss above its start in warmup, a fine-tuning run, early epochs at chance.
    "noisy_warmup": ([2.4, 2.9, 3.2, 2.6, 2.0, 1.4], [12, 14, 25, 40, 60, 70]),
    "finetune": ([0.3, 0.35, 0.4, 0.3, 0.2], [80, 85, 86, 88]),
    "early": ([], [10, 11, 9, 10, 12, 11, 10]),  # at chance, but a fourth of the run is to come
}


@pytest.mark.parametrize("losses, evals", HEALTHY.values(), ids=HEALTHY.keys())
def test_healthy_runs_do_not_warn(losses, evals, caplog):
    with caplog.at_level(logging.WARNING):
        monitor = _feed(losses, evals)
    assert monitor.warnings == []
    assert not [r for r in caplog.records if "Run health" in r.getMessage()]


def test_diverging_loss_warns_once_with_the_cause_and_a_lower_lr(caplog):
    # base_lr 0.4 (the former default) on coloured digits (chance level ln 10 = 2.3).
    with caplog.at_level(logging.WARNING):
        monitor = _feed([5.61, 13.56, 5.22, 4.91, 4.87], base_lr=0.4)
    assert len(monitor.warnings) == 1
    line = monitor.warnings[0]
    assert "diverging" in line and "step 30" in line and "base_lr=0.04" in line
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [line]


def test_a_loss_above_its_start_for_fewer_logs_than_the_patience_is_not_diverging():
    assert not health.diverging([2.3, 4.0, 4.0, 2.0], 10)
    assert health.diverging([2.3, 4.0, 4.0, 4.0], 10)
    # A fine-tuning run starting at 0.2 is held to its own start, not to ln(K).
    assert health.diverging([0.2, 0.5, 0.6, 0.7], 10)


def test_stuck_at_chance_warns_after_a_few_epochs_with_the_likely_cause():
    losses = [5.6, 13.6, 5.2, 4.9, 4.9, 3.1, 2.5, 2.4, 2.3]  # diverged, now near ln 10
    monitor = _feed(losses, [8.3, 12.8, 12.8, 8.6, 12.1, 10.1, 10.1, 8.1, 11.3])
    stuck = [w for w in monitor.warnings if "not learning" in w]
    assert len(stuck) == 1
    assert "epoch 8.0" in stuck[0] and "chance (10.0% for 10 classes)" in stuck[0]
    assert "went above it" in stuck[0] and "base_lr=0.04" in stuck[0]


def test_fitting_train_but_chance_on_eval_points_at_preprocessing_or_labels():
    monitor = _feed([2.3, 1.0, 0.4, 0.1], [10, 9, 11, 10, 10, 10, 10, 10])
    assert len(monitor.warnings) == 1
    assert "train_pp and eval_pp" in monitor.warnings[0]


@pytest.mark.parametrize(
    "source,says,not_says",
    [
        ("folder:/data/birds", "both splits of /data/birds have the same class folders", "prepare"),
        ("tfds:imagenet2012", "python -m cnnx.data.prepare imagenet2012", "class folders"),
        ("digits", "labels come with this in-memory data", "class folders"),
    ],
)
def test_the_label_advice_matches_the_source(source, says, not_says):
    """Issue 30 item 5: class folders only for folder sources."""
    monitor = _feed([2.3, 1.0, 0.4, 0.1], [10, 9, 11, 10, 10, 10, 10, 10], source=source)
    assert len(monitor.warnings) == 1
    assert says in monitor.warnings[0] and not_says not in monitor.warnings[0]


def test_chance_band_is_binomial_noise():
    # 397 examples, 10 classes: sigma = sqrt(0.1 * 0.9 / 397) = 1.51%.
    assert health.chance_band(10, 397) == pytest.approx(10 + 3 * 1.5057, abs=1e-3)
    evals = [(100, 14.0, 397), (120, 13.0, 397), (140, 14.5, 397)]
    assert health.stuck_at_chance(evals, 10, steps_per_epoch=20, total_steps=400)
    # Too early: a quarter of a 1,000-step run is 250 steps.
    assert not health.stuck_at_chance(evals, 10, steps_per_epoch=20, total_steps=1000)
    evals[-1] = (140, 15.0, 397)  # above the band: it is learning
    assert not health.stuck_at_chance(evals, 10, steps_per_epoch=20, total_steps=400)


def test_loop_records_a_diverging_run_in_results_json(tmp_path, caplog):
    """End to end: an lr far too high for LeNet-5 on digits warns in the log and results."""
    config = tiny_config(**{"optim.base_lr": 100.0, "train.num_steps": 8})
    config.train.on_nonfinite = "skip"  # should a step overflow, keep going: it still warns
    workdir = str(tmp_path / "run")
    with caplog.at_level(logging.WARNING):
        results = train_and_evaluate(config, workdir)
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["warnings"] == results["warnings"]
    assert len(results["warnings"]) == 1 and "diverging" in results["warnings"][0]
    assert "base_lr=10" in results["warnings"][0]
    assert any(r.getMessage() == results["warnings"][0] for r in caplog.records)


@pytest.mark.slow
def test_default_recipe_learns_coloured_digits(tmp_path):
    """The default recipe on the issue's folder of coloured digits (1,400 train / 397 test,
    chance 10%) learns, with no warning (issue 16 item 9: base_lr 0.4 ended at chance).

    The issue's size, not a subset: on 640 images LeNet-5 at this rate is on the edge (seed 0
    stays at chance, which the stuck-at-chance warning reports; seed 1 reaches 73%)."""
    spec = importlib.util.spec_from_file_location("default_config", CONFIGS / "default.py")
    default = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(default)
    root = str(tmp_path / "color_digits")
    load_script("make_color_digits").make_color_digits(root)
    config = default.get_config()
    config.data.source = f"folder:{root}"
    results = train_and_evaluate(config, str(tmp_path / "run"))
    assert results["eval/top1"] > 80.0, results  # measured 94.7% (seed 0)
    assert results["warnings"] == []


def test_coloured_digits_are_deterministic_by_seed(tmp_path):
    make = load_script("make_color_digits").make_color_digits

    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.png"))}

    counts = make(str(tmp_path / "a"), num_train=20, num_test=10, seed=3)
    make(str(tmp_path / "b"), num_train=20, num_test=10, seed=3)
    make(str(tmp_path / "c"), num_train=20, num_test=10, seed=4)
    a, b, c = (files(tmp_path / name) for name in "abc")
    assert counts == {"train": 20, "test": 10} and len(a) == 30
    assert a == b and a != c
    with pytest.raises(ValueError, match="1797"):
        make(str(tmp_path / "d"), num_train=1500, num_test=400)
