"""Issue 33 item 2: a sweep whose trials fail does not present a winner. Sizes a scaling rule
derives are snapped to what the model accepts (and recorded), a partial grid chooses no point
and exits 1 unless --allow_failed_trials, and --dry_run checks every trial's config."""

import json

import pytest

from cnnx.errors import ConfigError
from cnnx.models import create, get_spec
from cnnx.sweeps import report, results, study
from cnnx.sweeps.sizes import trial_config
from cnnx.sweeps.spec import load_sweep
from cnnx.train.experiment import nearest_input_size
from tests.analysis.scripts import load_script
from tests.sweeps.test_study import FIXTURE, _quiet, _storage, fake_runner

GRID = "configs/sweeps/efficientnet_grid.py:lenet5,digits,limit=4,steps=30"


def test_nearest_input_size_of_lenet5():
    spec = get_spec("lenet5")
    model = create("lenet5", num_classes=10)
    # Two stride-2 VALID stages after 5x5 VALID convolutions: 32, 36, 40... use every pixel.
    assert [nearest_input_size(spec, model, 1, s) for s in (32, 35, 37, 38, 30)] == [
        32,
        36,
        36,
        40,  # a tie: the larger
        32,  # below the minimum: up
    ]
    with pytest.raises(ConfigError, match="accepts no input size within 1 px of 34"):
        nearest_input_size(spec, model, 1, 34, radius=1)


def test_grid_sizes_are_snapped_and_recorded():
    sweep = load_sweep(GRID)
    assert sweep.derived_sizes == ("data.image_size",)
    asked = [t.overrides["data.image_size"] for t in sweep.trials]
    assert asked == [38, 37, 35, 32]  # round(32·γ): LeNet-5 refuses the first three
    used = []
    for t in sweep.trials:
        config, snapped = trial_config(sweep, t)
        used.append(config.data.image_size)
        assert snapped == ({} if t.index == 3 else {"data.image_size": [asked[t.index], used[-1]]})
    assert used == [40, 36, 36, 32]
    # A size set by hand is not a rule's: it stays as given (and the run refuses it).
    fixed = load_sweep(f"{FIXTURE}:size=35")
    assert trial_config(fixed, fixed.trials[0])[0].data.image_size == 35


def test_phi_table_shows_the_sizes_the_scaled_model_accepts():
    sweep = load_sweep(GRID)
    best = {"tags": {"alpha": 1.2, "beta": 1.1, "gamma": 1.15}}
    text = sweep.module.report(best, [], sweep.arg)
    assert "37>36" in text and "the rule's a px snapped to b" in text


def test_a_partial_grid_chooses_no_point_and_exits_1(tmp_path, capsys):
    sweep = load_sweep(FIXTURE)
    runner = fake_runner([], fail={0, 1})
    study.run_worker(sweep, str(tmp_path), _storage(tmp_path), runner=runner, log=_quiet)
    records = results.read_all(str(tmp_path))
    text = report.summarize(sweep, records, str(tmp_path))
    assert "Best" not in text and "No point chosen: only 1 of 3 points were measured" in text
    assert "trial 0 (width=0.5) failed: boom" in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best"] is None and (summary["measured"], summary["failed"]) == (1, 2)
    text = report.summarize(sweep, records, str(tmp_path), allow_failed=True)
    assert "Best of the 1 measured points (the others failed): trial 2" in text

    sweep_py = load_script("sweep")
    args = [f"--sweep={FIXTURE}", f"--workdir={tmp_path}", "--summarize_only"]
    assert sweep_py.main(args) == 1
    assert "error: 2 of 3 trials failed" in capsys.readouterr().err
    assert sweep_py.main([*args, "--allow_failed_trials"]) == 0


def test_dry_run_checks_each_trials_config(tmp_path, capsys):
    sweep_py = load_script("sweep")
    args = [f"--workdir={tmp_path}", "--dry_run"]
    assert sweep_py.main([f"--sweep={FIXTURE}:n=2,size=35", *args]) == 2
    out = capsys.readouterr()
    assert out.out.count("refused: lenet5 at 35x35 px never uses") == 2
    assert "error: 2 trial config(s) refused; the first: lenet5 at 35x35 px" in out.err
    assert sweep_py.main([f"--sweep={GRID}", *args]) == 0
    assert "ok, data.image_size 35 -> 36 px" in capsys.readouterr().out


def test_a_refused_trial_config_is_one_error_line(tmp_path, capsys):
    from cnnx.sweeps import worker

    args = [f"--sweep={FIXTURE}:size=35", '--overrides={"model.width_mult": 0.5}']
    assert worker.main([*args, f"--workdir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: lenet5 at 35x35 px never uses") and "Traceback" not in err
    assert report.failure_reason({"status": "failed", "error": f"log\n{err}"}) == err.strip()


@pytest.mark.slow  # trains LeNet-5 for two steps
def test_fixres_test_sizes_are_snapped(tmp_path):
    from cnnx.sweeps.fixres import run_fixres
    from cnnx.sweeps.spec import load_config

    fc = load_config("configs/sweeps/fixres.py:digits,model=lenet5")
    fc.train.train.num_steps = 2
    fc.train.ckpt.asynchronous = False
    fc.train_resolutions = (32,)
    fc.test_resolutions = (34, 36)  # 34 px: LeNet-5 would crop it; 36 is what it takes
    fc.finetune.steps = 0
    lines = []
    table = run_fixres(fc, str(tmp_path), log=lines.append)
    assert [(r["test_res"], r.get("test_res_asked")) for r in table["rows"]] == [(36, 34)]
    # Each cell is its own evaluator entry, its metrics kept in the row under its name.
    (row,) = table["rows"]
    assert row["evaluator"] == "test_36px_crop0p875"
    assert (
        row["before_metrics"]["test_36px_crop0p875/top1"]
        == row["before"]
        == table["before"][32][36]
    )
    assert row["before_metrics"]["test_36px_crop0p875/examples"] == 359
    assert "  test 34 px -> 36 px, the nearest size the model accepts" in lines
    assert "  test 36 px: the model takes 36 px, measured already" in lines


def test_dry_run_without_the_data_still_checks_the_model_and_sizes(tmp_path):
    from cnnx.sweeps.sizes import check_trial

    sweep = load_sweep("configs/sweeps/efficientnet_grid.py:lenet5,limit=2")  # ImageNet data
    sweep.base.data.data_dir = str(tmp_path)  # where it is not
    snapped, data = check_trial(sweep, sweep.trials[0])
    assert data.startswith("TFDS dataset 'imagenet2012' is not prepared")
    assert snapped == {"data.image_size": [37, 36]}
    sweep.base.data.eval_image_size = 35  # set by hand: not snapped, refused without the data
    with pytest.raises(ConfigError, match="lenet5 at 35x35 px never uses"):
        check_trial(sweep, sweep.trials[0])
