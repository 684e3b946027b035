"""The sweep driver: overrides, sharding, restart after a crash, summaries."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cnnx.errors import ConfigError
from cnnx.sweeps import report, results, runner
from cnnx.sweeps.spec import apply_overrides, load_sweep, parse_shard, shard_trials, trial_key

FIXTURE = os.path.join(os.path.dirname(__file__), "sweep_fixture.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Crash(Exception):
    """Stands in for the driver being killed mid-trial."""


def fake_runner(calls, crash_at=None):
    def run(sweep, trial, workdir, interrupt):
        del sweep, interrupt
        calls.append(trial.index)
        if trial.index == crash_at:
            raise Crash()
        os.makedirs(workdir, exist_ok=True)
        return {
            "status": "completed",
            "metrics": {"eval/top1": 90.0 + trial.index},
            "num_params": 1000 * (trial.index + 1),
            "macs": 10**6 * (trial.index + 1),
            "wall_time_s": 0.1,
        }

    return run


def test_overrides_keys_and_tags():
    sweep = load_sweep(FIXTURE)
    assert [t.tags for t in sweep.trials] == [{"width": 0.5}, {"width": 0.75}, {"width": 1.0}]
    c = apply_overrides(sweep.base, sweep.trials[0].overrides)
    assert c.model.width_mult == 0.5 and sweep.base.model.width_mult == 1.0
    assert trial_key({"a": 1, "b": 2}) == trial_key({"b": 2, "a": 1})
    # A different base (here: the step budget) gives different trials, not reused results.
    other = load_sweep(f"{FIXTURE}:steps=9")
    assert not {t.key for t in other.trials} & {t.key for t in sweep.trials}
    assert load_sweep(FIXTURE).trials == sweep.trials  # stable across loads
    with pytest.raises(ConfigError, match=r"model\.widht_mult"):
        apply_overrides(sweep.base, {"model.widht_mult": 2.0})
    with pytest.raises(ConfigError):
        apply_overrides(sweep.base, {"nosection.x": 1})


def test_shards_are_disjoint_and_cover():
    sweep = load_sweep(FIXTURE)
    parts = [shard_trials(sweep.trials, i, 2) for i in range(2)]
    assert [t.index for t in parts[0]] == [0, 2] and [t.index for t in parts[1]] == [1]
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_injected_crash_then_restart_skips_finished(tmp_path):
    wd = str(tmp_path)
    sweep = load_sweep(FIXTURE)
    calls = []
    with pytest.raises(Crash):
        runner.run_sweep(sweep, wd, runner=fake_runner(calls, crash_at=1))
    assert calls == [0, 1]
    before = results.read_all(wd)
    assert [r["index"] for r in before] == [0]
    calls.clear()
    assert runner.run_sweep(sweep, wd, runner=fake_runner(calls)) == "completed"
    assert calls == [1, 2]  # trial 0 is not re-run; the interrupted trial 1 is
    after = results.read_all(wd)
    assert after[0] == before[0]  # nothing recorded is lost or changed
    assert sorted(r["index"] for r in after) == [0, 1, 2]
    calls.clear()
    runner.run_sweep(sweep, wd, runner=fake_runner(calls))
    assert calls == []


def test_failed_trials_are_recorded_and_retried_on_request(tmp_path):
    wd = str(tmp_path)
    sweep = load_sweep(FIXTURE)

    def flaky(sweep, trial, workdir, interrupt):
        if trial.index == 2:
            return {"status": "failed", "error": "boom"}
        return fake_runner([])(sweep, trial, workdir, interrupt)

    runner.run_sweep(sweep, wd, runner=flaky)
    assert {r["index"]: r["status"] for r in results.read_all(wd)} == {
        0: "completed", 1: "completed", 2: "failed"}  # fmt: skip
    assert runner.pending_trials(sweep, wd, 0, 1) == []
    assert [t.index for t in runner.pending_trials(sweep, wd, 0, 1, retry_failed=True)] == [2]
    calls = []
    runner.run_sweep(sweep, wd, retry_failed=True, runner=fake_runner(calls))
    assert calls == [2]
    assert results.latest_by_key(results.read_all(wd))[sweep.trials[2].key]["status"] == (
        "completed"
    )


def test_sharded_runs_write_separate_files_and_summary(tmp_path):
    wd = str(tmp_path)
    sweep = load_sweep(FIXTURE)
    for i in range(2):
        runner.run_sweep(sweep, wd, shard=i, num_shards=2, runner=fake_runner([]))
    names = sorted(n for n in os.listdir(wd) if n.startswith("results"))
    assert names == ["results.shard-0-of-2.jsonl", "results.shard-1-of-2.jsonl"]
    text = report.summarize(sweep, results.read_all(wd), wd)
    with open(os.path.join(wd, "summary.json")) as f:
        best = json.load(f)["best"]
    assert best["index"] == 2 and "Best: trial 2" in text
    assert os.path.getsize(os.path.join(wd, "accuracy_vs_flops.png")) > 1000


def _wait_for(predicate, timeout, proc):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"sweep exited early with {proc.returncode}")
        time.sleep(0.5)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_sigkill_mid_trial_then_restart(tmp_path):
    """Real trials in subprocesses: kill -9 the driver during trial 1, start it again."""
    wd = str(tmp_path / "sweep")
    ref = f"{FIXTURE}:steps=24"
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"), f"--sweep={ref}",
           f"--workdir={wd}"]  # fmt: skip
    sweep = load_sweep(ref)
    t1 = runner.trial_workdir(wd, sweep.trials[1])
    ckpts = os.path.join(t1, "checkpoints")

    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: len(results.read_all(wd)) == 1, 600, proc)
        _wait_for(
            lambda: os.path.isdir(ckpts) and any(n.isdigit() for n in os.listdir(ckpts)), 600, proc
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    first = results.read_all(wd)
    assert [r["index"] for r in first] == [0] and first[0]["status"] == "completed"
    t0_result = os.path.join(wd, first[0]["workdir"], "trial_result.json")
    mtime = os.stat(t0_result).st_mtime_ns
    time.sleep(2)  # the orphaned trainer (if any) would write within this window

    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    final = results.read_all(wd)
    assert sorted(r["index"] for r in final) == [0, 1, 2]
    assert final[0] == first[0]  # recorded result untouched
    assert os.stat(t0_result).st_mtime_ns == mtime  # trial 0 was not re-run
    with open(os.path.join(t1, "trial.log")) as f:
        assert "Resumed from checkpoint" in f.read()
    for r in final:
        assert r["status"] == "completed" and r["macs"] > 0 and r["num_params"] > 0
        assert 0 <= r["metrics"]["eval/top1"] <= 100
    assert "Best: trial" in out.stdout
