"""Issue 33 item 3: sweeps under storage faults. A real journal file with a damaged line (named
with its byte offset; the repair it gives works; --summarize_only still summarises) or a torn
last one (cut before the next append); a real PostgreSQL server down at start or restarted
mid-trial (storage calls wait it out, or one error line); a second study in a workdir refused;
a worker paused past --grace_s keeps its trial (real processes)."""

import os
import signal
import subprocess
import sys
import threading
import time

import optuna
import pytest

from cnnx.errors import StorageError, WorkdirError
from cnnx.sweeps import results, study
from cnnx.sweeps.journal import journal_damage
from cnnx.sweeps.spec import load_sweep
from cnnx.sweeps.storage import JOURNAL, open_storage
from cnnx.train.workdir import lock_path
from tests.analysis.scripts import load_script
from tests.jax_cache import compilation_cache, env  # noqa: F401
from tests.multiprocess import REPO, cpu_env
from tests.sweeps.test_study import FIXTURE, _quiet, _storage, fake_runner


def _run(wd, sweep=None, **kw):
    sweep = sweep or load_sweep(FIXTURE)
    runner = kw.pop("runner", None) or fake_runner([])
    storage = kw.pop("storage", None) or _storage(wd)
    return study.run_worker(sweep, str(wd), storage, runner=runner, log=_quiet, **kw)


def test_a_damaged_journal_line_is_named_with_its_offset_and_the_repair_works(tmp_path, capsys):
    sweep = load_sweep(FIXTURE)
    _run(tmp_path, sweep)
    path = tmp_path / JOURNAL
    lines = path.read_bytes().splitlines(keepends=True)
    k = len(lines) // 2
    offset = sum(map(len, lines[:k]))
    # Half a record glued to the next one: what an append cut short by a full disk leaves.
    torn = lines[k][: len(lines[k]) // 2]
    path.write_bytes(b"".join(lines[:k]) + torn + b"".join(lines[k + 1 :]))
    assert journal_damage(str(path))[:2] == (k + 1, offset)
    with pytest.raises(StorageError, match=rf"line {k + 1} \(byte offset {offset}\)") as e:
        _storage(tmp_path)
    assert f"truncate -s {offset} {path}" in str(e.value) and "\n" not in str(e.value)
    # --summarize_only says so in one line and summarises the last export.
    sweep_py = load_script("sweep")
    assert sweep_py.main([f"--sweep={FIXTURE}", f"--workdir={tmp_path}", "--summarize_only"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "byte offset" in err and "Traceback" not in err
    assert "Summarising the last export" in err
    assert "3/3 trials completed" in (tmp_path / "summary.md").read_text()
    # The repair the message gives: the journal opens, the dropped trials run again.
    os.truncate(path, offset)
    calls = []
    assert _run(tmp_path, sweep, runner=fake_runner(calls)) == "completed"
    latest = results.latest_by_key(results.read_all(str(tmp_path)))
    assert sorted(r["index"] for r in latest.values()) == [0, 1, 2]


def test_a_torn_last_line_is_cut_before_the_next_append(tmp_path):
    _run(tmp_path, runner=fake_runner([], fail={2}))
    path = tmp_path / JOURNAL
    size = path.stat().st_size
    with open(path, "ab") as f:  # a worker killed in the middle of an append
        f.write(b'{"op_code":5,"worker_id":"w","trial_id":2,"us')
    calls = []
    _run(tmp_path, runner=fake_runner(calls), retry_failed=True)
    assert [i for i, _ in calls] == [2]
    assert journal_damage(str(path)) is None and path.stat().st_size > size
    s = optuna.load_study(
        study_name=study.study_name(load_sweep(FIXTURE)), storage=_storage(tmp_path)
    )
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in s.trials) == 3


def test_a_second_study_in_a_workdir_is_refused(tmp_path):
    _run(tmp_path)
    other = load_sweep(f"{FIXTURE}:steps=9")
    with pytest.raises(WorkdirError, match=r"holds the study sweep_fixture-\w+ .*--new_study"):
        _run(tmp_path, other)
    assert _run(tmp_path, other, new_study=True) == "completed"
    assert {r["key"] for r in results.read_all(str(tmp_path))} == {t.key for t in other.trials}


def test_a_database_down_at_start_is_waited_for_or_one_error_line(
    tmp_path, postgres_url, postgres_control
):
    postgres_control["stop"]()
    t0 = time.monotonic()
    with pytest.raises(StorageError, match=r"postgres@127\.0\.0\.1:\d+/sweep_\w+ has failed") as e:
        open_storage(postgres_url, str(tmp_path), heartbeat_s=1, grace_s=2, patience_s=3)
    assert "(connecting: OperationalError" in str(e.value) and time.monotonic() - t0 < 30
    threading.Timer(2.0, postgres_control["start"]).start()  # the database comes up
    storage = open_storage(postgres_url, str(tmp_path), heartbeat_s=1, grace_s=2, patience_s=60)
    assert _run(tmp_path, storage=storage) == "completed"


def test_a_database_restarted_mid_trial_loses_no_record(tmp_path, postgres_url, postgres_control):
    storage = open_storage(postgres_url, str(tmp_path), heartbeat_s=1, grace_s=30, patience_s=60)
    inner = fake_runner([])

    def restarting(sweep, trial, workdir, interrupt):
        if trial.index == 1:  # the server goes down under the running trial, back in 3 s
            postgres_control["stop"]()
            threading.Timer(3.0, postgres_control["start"]).start()
        return inner(sweep, trial, workdir, interrupt)

    assert _run(tmp_path, storage=storage, runner=restarting) == "completed"
    latest = results.latest_by_key(results.read_all(str(tmp_path)))
    assert sorted((r["index"], r["status"]) for r in latest.values()) == [
        (0, "completed"),
        (1, "completed"),
        (2, "completed"),
    ]


def _wait(predicate, timeout, what):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_worker_paused_past_grace_keeps_its_trial(tmp_path, compilation_cache):  # noqa: F811
    ref, wd = f"{FIXTURE}:steps=60,n=1", tmp_path / "sweep"
    (trial,) = load_sweep(ref).trials
    folder = os.path.join(wd, "trials", trial.dirname)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    flags = ["--heartbeat_s=1", "--grace_s=4", "--in_process"]
    procs = []

    def start(log):
        cmd = [sys.executable, "scripts/sweep.py", f"--sweep={ref}", f"--workdir={wd}", *flags]
        with open(log, "w") as f:
            run_env = cpu_env(1, env(compilation_cache))
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=run_env, stdout=f, stderr=f))

    try:
        start(logs[0])
        _wait(lambda: os.path.exists(lock_path(folder)), 240, "the trial's lock")
        procs[0].send_signal(signal.SIGSTOP)  # paused (a stalled VM, ^Z) past --grace_s
        time.sleep(6)
        start(logs[1])  # takes the trial over: it waits for the paused worker's lock
        _wait(lambda: "still being trained" in logs[1].read_text(), 240, "the retry to wait")
        procs[0].send_signal(signal.SIGCONT)
        for p in procs:
            p.wait(timeout=600)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
    outs = [log.read_text() for log in logs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    assert "was taken for dead meanwhile" in outs[0] and "Traceback" not in outs[0]
    (record,) = results.latest_by_key(results.read_all(str(wd))).values()
    assert record["status"] == "completed" and record["metrics"]["step"] == 60
