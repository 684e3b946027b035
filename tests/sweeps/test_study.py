"""Sweeps on Optuna, in-process with a stand-in trainer: the grid runs once per point, restarts
skip finished trials, failed trials retry on request, a search keeps its budget, a dead
worker's trial is retried in the same folder, records read back without Optuna."""

import json
import os

import optuna
import pytest

from cnnx.errors import ConfigError
from cnnx.sweeps import report, results, study
from cnnx.sweeps.spec import apply_overrides, load_sweep, trial_key
from cnnx.sweeps.storage import open_storage

FIXTURE = os.path.join(os.path.dirname(__file__), "sweep_fixture.py")


def fake_runner(calls, fail=(), preempt=()):
    """Records (index, workdir) per call; 'trains' by writing a marker file in the workdir."""

    def run(sweep, trial, workdir, interrupt):
        del sweep
        calls.append((trial.index, workdir))
        os.makedirs(workdir, exist_ok=True)
        if trial.index in preempt:
            preempt.remove(trial.index)
            interrupt.requested = True
            return {"status": "preempted"}
        if trial.index in fail:
            return {"status": "failed", "error": "boom"}
        return {
            "status": "completed",
            "metrics": {"eval/top1": 90.0 + trial.index},
            "num_params": 1000 * (trial.index + 1),
            "macs": 10**6 * (trial.index + 1),
            "wall_time_s": 0.1,
        }

    return run


def _storage(wd, **kw):
    return open_storage(None, str(wd), heartbeat_s=1, grace_s=2, **kw)


def _quiet(_):
    pass


def test_overrides_keys_tags_and_folder_names():
    sweep = load_sweep(FIXTURE)
    assert [t.tags for t in sweep.trials] == [{"width": 0.5}, {"width": 0.75}, {"width": 1.0}]
    c = apply_overrides(sweep.base, sweep.trials[0].overrides)
    assert c.model.width_mult == 0.5 and sweep.base.model.width_mult == 1.0
    assert trial_key({"a": 1, "b": 2}) == trial_key({"b": 2, "a": 1})
    # A different base (here: the step budget) gives different trials and another study.
    other = load_sweep(f"{FIXTURE}:steps=9")
    assert not {t.key for t in other.trials} & {t.key for t in sweep.trials}
    assert study.study_name(other) != study.study_name(sweep)
    assert study.study_name(load_sweep(FIXTURE)) == study.study_name(sweep)
    t = sweep.trials[1]
    assert t.dirname == f"width=0.75-{t.key}"
    with pytest.raises(ConfigError, match=r"model\.widht_mult"):
        apply_overrides(sweep.base, {"model.widht_mult": 2.0})


def test_grid_runs_each_point_once_and_restart_runs_nothing(tmp_path):
    sweep = load_sweep(FIXTURE)
    calls = []
    assert (
        study.run_worker(
            sweep, str(tmp_path), _storage(tmp_path), runner=fake_runner(calls), log=_quiet
        )
        == "completed"
    )
    assert sorted(i for i, _ in calls) == [0, 1, 2]
    assert {os.path.basename(w) for _, w in calls} == {t.dirname for t in sweep.trials}
    calls.clear()
    study.run_worker(
        sweep, str(tmp_path), _storage(tmp_path), runner=fake_runner(calls), log=_quiet
    )
    assert calls == []
    # Readable without Optuna: the JSON Lines export, the table and the plot.
    records = results.read_all(str(tmp_path))
    assert sorted(r["index"] for r in records) == [0, 1, 2]
    assert all(r["status"] == "completed" for r in records)
    text = report.summarize(sweep, records, str(tmp_path))
    best = json.loads((tmp_path / "summary.json").read_text())["best"]
    assert best["index"] == 2 and "Best: trial 2 (width=1)" in text
    assert os.path.getsize(tmp_path / "accuracy_vs_flops.png") > 1000
    # Exactly one Optuna trial per grid point.
    s = optuna.load_study(study_name=study.study_name(sweep), storage=_storage(tmp_path))
    assert sorted(t.params["model.width_mult"] for t in s.trials) == [0.5, 0.75, 1.0]


def test_failed_trials_are_recorded_and_retried_on_request(tmp_path):
    sweep = load_sweep(FIXTURE)
    study.run_worker(
        sweep, str(tmp_path), _storage(tmp_path), runner=fake_runner([], fail={2}), log=_quiet
    )
    status = {r["index"]: r["status"] for r in results.read_all(str(tmp_path))}
    assert status == {0: "completed", 1: "completed", 2: "failed"}
    calls = []
    study.run_worker(
        sweep, str(tmp_path), _storage(tmp_path), runner=fake_runner(calls), log=_quiet
    )
    assert calls == []  # failed stays failed unless asked
    study.run_worker(
        sweep,
        str(tmp_path),
        _storage(tmp_path),
        runner=fake_runner(calls),
        retry_failed=True,
        log=_quiet,
    )
    assert [i for i, _ in calls] == [2]
    latest = results.latest_by_key(results.read_all(str(tmp_path)))
    assert latest[sweep.trials[2].key]["status"] == "completed"


def test_interrupted_trial_is_queued_again_in_the_same_folder(tmp_path):
    sweep = load_sweep(FIXTURE)
    calls = []
    state = study.run_worker(
        sweep, str(tmp_path), _storage(tmp_path), runner=fake_runner(calls, preempt={0}), log=_quiet
    )
    assert state == "interrupted" and [i for i, _ in calls] == [0]
    study.run_worker(
        sweep, str(tmp_path), _storage(tmp_path), runner=fake_runner(calls), log=_quiet
    )
    assert sorted(i for i, _ in calls) == [0, 0, 1, 2]
    assert calls[0][1] == next(w for i, w in calls[1:] if i == 0)


def test_dead_workers_trial_is_retried_in_its_folder(tmp_path):
    """A trial left RUNNING without heartbeats (its worker was killed) runs again."""
    sweep = load_sweep(FIXTURE)
    storage = _storage(tmp_path)
    s = study.open_study(sweep, storage)
    dead = s.ask()  # the dead worker's trial: running, no heartbeat ever again
    width = dead.suggest_categorical("model.width_mult", [0.5, 0.75, 1.0])
    calls = []
    study.run_worker(
        sweep, str(tmp_path), _storage(tmp_path), runner=fake_runner(calls), poll_s=0.5, log=_quiet
    )
    assert sorted(i for i, _ in calls) == [0, 1, 2]
    trials = optuna.load_study(study_name=study.study_name(sweep), storage=storage).trials
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.number for t in failed] == [dead.number]
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retry) == 1 and retry[0].params["model.width_mult"] == width
    assert retry[0].state == optuna.trial.TrialState.COMPLETE


def test_search_keeps_its_budget(tmp_path):
    sweep = load_sweep(f"{FIXTURE}:search=4")
    assert sweep.is_search and sweep.total == 4 and sweep.trials == []
    calls = []
    study.run_worker(
        sweep, str(tmp_path), _storage(tmp_path), runner=fake_runner(calls), log=_quiet
    )
    records = results.read_all(str(tmp_path))
    widths = [r["overrides"]["model.width_mult"] for r in records]
    assert len(calls) == 4 and len(set(widths)) == 4 and all(0.5 <= w <= 1.5 for w in widths)
    assert all(r["tags"] == {"width_mult": w} for r, w in zip(records, widths))
    text = report.summarize(sweep, records, str(tmp_path))
    assert text.startswith(f"Sweep {FIXTURE}:search=4: 4/4 trials completed") and "Best:" in text
    study.run_worker(
        sweep, str(tmp_path), _storage(tmp_path), runner=fake_runner(calls), log=_quiet
    )
    assert len(calls) == 4


def test_progress_line_has_an_eta(tmp_path):
    sweep = load_sweep(FIXTURE)
    lines = []
    study.run_worker(
        sweep, str(tmp_path), _storage(tmp_path), runner=fake_runner([]), log=lines.append
    )
    progress = [x for x in lines if x.startswith("[")]
    assert progress[0].startswith("[1/3] width=0.5: completed in 0 s; 2 left, ETA ")
    assert progress[-1].startswith("[3/3] ") and "ETA" not in progress[-1]


def test_a_creator_that_died_mid_enqueue_is_completed_without_duplicates(tmp_path):
    sweep = load_sweep(FIXTURE)
    storage = _storage(tmp_path)
    s = optuna.create_study(
        study_name=study.study_name(sweep), storage=storage, direction="maximize"
    )
    t0 = sweep.trials[0]
    s.enqueue_trial(dict(t0.overrides), user_attrs={"key": t0.key})  # then it died
    s = study.open_study(sweep, storage, wait_s=0)
    keys = sorted(t.user_attrs["key"] for t in s.trials)
    assert keys == sorted(t.key for t in sweep.trials)
    assert s.user_attrs[study.ENQUEUED_ATTR] == 3
