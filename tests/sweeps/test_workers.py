"""Real sweep workers (`scripts/sweep.py` processes) sharing one study, on the journal file and
on a throwaway PostgreSQL server: two at once run every trial exactly once and lose none; one
killed with SIGKILL mid-trial has its trial taken over by the other, resumed from its last
checkpoint."""

import collections
import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest

from cnnx.sweeps import results, runner, study
from cnnx.sweeps.spec import load_sweep
from cnnx.sweeps.storage import JOURNAL, open_storage
from cnnx.train.workdir import checkpoints_dir
from tests.jax_cache import compilation_cache, env  # noqa: F401
from tests.multiprocess import REPO, cpu_env

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("compilation_cache")]
FIXTURE = "tests/sweeps/sweep_fixture.py"
# Trials in the worker process (no subprocess per trial: one interpreter start less per trial).
FLAGS = ["--heartbeat_s=1", "--grace_s=4", "--in_process"]


@pytest.fixture(params=["journal", "postgresql"])
def storage(request):
    """None (the default journal file in the workdir) or a fresh PostgreSQL database URL."""
    if request.param == "journal":
        return None
    return request.getfixturevalue("postgres_url")


def _worker(wd, ref, storage, cache) -> subprocess.Popen:
    cmd = [sys.executable, "scripts/sweep.py", f"--sweep={ref}", f"--workdir={wd}", *FLAGS]
    cmd += [f"--storage={storage}"] if storage else []
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=cpu_env(1, env(cache)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(procs, timeout=900) -> list[str]:
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    return outs


def _study(ref, wd, storage):
    sweep = load_sweep(ref)
    s = optuna.load_study(
        study_name=study.study_name(sweep), storage=open_storage(storage, str(wd))
    )
    return sweep, s


def _counts(sweep, s):
    """(runs twice, lost): grid points completed more than once, and never."""
    done = collections.Counter(
        t.user_attrs["key"] for t in s.trials if t.state == optuna.trial.TrialState.COMPLETE
    )
    twice = sum(n - 1 for n in done.values() if n > 1)
    lost = sum(1 for t in sweep.trials if done[t.key] == 0)
    return twice, lost


def test_two_workers_split_the_trials(tmp_path, storage, compilation_cache):  # noqa: F811
    ref, wd = f"{FIXTURE}:steps=8,n=3", tmp_path / "sweep"
    procs = [_worker(wd, ref, storage, compilation_cache) for _ in range(2)]
    outs = _finish(procs)
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    sweep, s = _study(ref, wd, storage)
    assert _counts(sweep, s) == (0, 0)
    assert len(s.trials) == 3  # no extra trial was ever asked for
    workers = {t.user_attrs["worker"] for t in s.trials}
    assert len(workers) == 2, outs  # both took part
    records = results.read_all(str(wd))
    assert sorted(r["index"] for r in records) == [0, 1, 2]
    assert all(r["status"] == "completed" and r["macs"] > 0 for r in records)
    assert "Best: trial" in outs[0] + outs[1]
    # Trial folders say the swept value; each has its TensorBoard hyperparameters.
    for t in sweep.trials:
        folder = wd / "trials" / t.dirname
        assert folder.name.startswith(f"width={t.tags['width']:g}-")
        assert any(b"hparams" in p.read_bytes() for p in folder.glob("events.out.tfevents*"))


def _wait_for(predicate, timeout, procs):
    t0 = time.time()
    while time.time() - t0 < timeout:
        found = predicate()
        if found:
            return found
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"a worker exited early:\n{p.stdout.read()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_sigkilled_workers_trial_resumes_elsewhere(tmp_path, storage, compilation_cache):  # noqa: F811
    ref, wd = f"{FIXTURE}:steps=120,n=2", tmp_path / "sweep"
    sweep = load_sweep(ref)
    dirs = {t.key: runner.trial_workdir(str(wd), t) for t in sweep.trials}
    procs = [_worker(wd, ref, storage, compilation_cache) for _ in range(2)]
    by_pid = {p.pid: p for p in procs}

    def running_with_checkpoint():
        # A trial some worker runs that has saved a checkpoint past step 0.
        if not (wd / JOURNAL).exists() and storage is None:
            return None
        try:
            _, s = _study(ref, wd, storage)
        except KeyError:  # the study is not created yet
            return None
        for t in s.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            key, worker = t.user_attrs.get("key"), t.user_attrs.get("worker")
            if key is None or worker is None:
                continue
            ckpts = checkpoints_dir(dirs[key])
            names = os.listdir(ckpts) if os.path.isdir(ckpts) else []
            steps = [int(n) for n in names if n.isdigit()]
            if any(n >= 8 for n in steps):
                return key, int(worker.rsplit(":", 1)[1])
        return None

    try:
        key, pid = _wait_for(running_with_checkpoint, 240, procs)
        victim = by_pid[pid]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        (survivor,) = [p for p in procs if p is not victim]
        out = _finish([survivor])[0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert survivor.returncode == 0, out[-3000:]
    sweep, s = _study(ref, wd, storage)
    assert _counts(sweep, s) == (0, 0)
    failed = [t for t in s.trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.user_attrs["key"] for t in failed] == [key]  # the killed attempt, retried once
    resumed = [int(n) for n in re.findall(r"Resumed from checkpoint at step (\d+)", out)]
    assert resumed and resumed[0] > 0, out[-3000:]
    assert "retry of #" in out
    records = results.latest_by_key(results.read_all(str(wd)))
    assert records[key]["status"] == "completed" and records[key]["metrics"]["step"] == 120
