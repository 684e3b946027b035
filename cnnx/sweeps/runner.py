"""The sweep driver: runs a shard's unfinished trials, one at a time, and records each result.

Each trial runs in a subprocess (`python -m cnnx.sweeps.worker`) by default. Why: a trial that
crashes the interpreter (XLA abort, segfault, out-of-memory kill) then costs one trial, not the
sweep; every trial starts with a fresh device and a fresh compilation cache, so memory does not
pile up over dozens of differently shaped models; and the driver stays small, so killing and
restarting it is cheap. The price is a few seconds of imports per trial, nothing beside a
training run. `isolate=False` runs trials in-process (tests, debugging).

Restart semantics: the results files (see `results.py`) are the record. A trial whose key has a
'completed' record is skipped; a trial cut short (driver killed, preempted) has no record and
runs again, resuming from the checkpoint in its own workdir; a 'failed' trial is retried only
with `retry_failed`. The child is tied to the driver (PR_SET_PDEATHSIG on Linux), so a killed
driver leaves no orphan trainer writing into a workdir that a restarted driver reuses.
"""

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable

from absl import logging

from cnnx.sweeps import results as results_lib
from cnnx.sweeps.spec import Sweep, Trial, apply_overrides, shard_trials
from cnnx.sweeps.worker import RESULT_FILE

TRIALS_DIR = "trials"


def trial_workdir(workdir: str, trial: Trial) -> str:
    return os.path.join(workdir, TRIALS_DIR, trial.key)


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGKILL when the driver dies (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _tail(path: str, n: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


class _Interrupt:
    """SIGTERM/SIGINT: forward to the running trial (it checkpoints and exits), then stop."""

    def __init__(self):
        self.requested = False
        self.child: subprocess.Popen | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        self.requested = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run_subprocess(sweep: Sweep, trial: Trial, workdir: str, interrupt: _Interrupt) -> dict:
    """Runs a trial in a child process; its output goes to `<workdir>/trial.log`."""
    os.makedirs(workdir, exist_ok=True)
    result_path = os.path.join(workdir, RESULT_FILE)
    if os.path.exists(result_path):
        os.remove(result_path)  # from an earlier, unrecorded attempt
    cmd = [
        sys.executable,
        "-m",
        "cnnx.sweeps.worker",
        f"--sweep={sweep.ref}",
        f"--key={trial.key}",
        f"--workdir={workdir}",
    ]
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    log_path = os.path.join(workdir, "trial.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
        )
        interrupt.child = proc
        rc = proc.wait()
        interrupt.child = None
    if rc == 0 and os.path.exists(result_path):
        with open(result_path) as f:
            return json.load(f)
    if interrupt.requested or rc == 143:
        return {"status": "preempted"}
    return {"status": "failed", "returncode": rc, "error": _tail(log_path)}


def run_inprocess(sweep: Sweep, trial: Trial, workdir: str, interrupt: _Interrupt) -> dict:
    """Runs a trial in this process (no crash isolation); exceptions become 'failed'."""
    del interrupt
    from cnnx.sweeps.worker import run_trial

    try:
        return run_trial(apply_overrides(sweep.base, trial.overrides), workdir)
    except Exception as e:
        return {"status": "failed", "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"}


def pending_trials(
    sweep: Sweep, workdir: str, shard: int, num_shards: int, retry_failed: bool = False
) -> list[Trial]:
    """The shard's trials that still need running (no 'completed' record for their key)."""
    done = results_lib.latest_by_key(results_lib.read_all(workdir))
    skip = {"completed"} if retry_failed else {"completed", "failed"}
    return [
        t
        for t in shard_trials(sweep.trials, shard, num_shards)
        if done.get(t.key, {}).get("status") not in skip
    ]


def run_sweep(
    sweep: Sweep,
    workdir: str,
    *,
    shard: int = 0,
    num_shards: int = 1,
    isolate: bool = True,
    retry_failed: bool = False,
    runner: Callable | None = None,
    record: bool = True,
) -> str:
    """Runs the unfinished trials of one shard and appends a record for each.

    Args:
      sweep: the loaded sweep.
      workdir: sweep directory (results files, trials/<key>/ workdirs).
      shard, num_shards: this process runs trials with index % num_shards == shard.
      isolate: one subprocess per trial (default) or in-process.
      retry_failed: also re-run trials recorded as failed.
      runner: `fn(sweep, trial, trial_workdir, interrupt) -> dict` replacing the default (tests).
      record: append the records (False on processes other than 0 of a multi-process sweep).

    Returns:
      'completed' when the shard has no unfinished trial left, 'interrupted' otherwise.
    """
    os.makedirs(workdir, exist_ok=True)
    path = results_lib.shard_path(workdir, shard, num_shards)
    runner = runner or (run_subprocess if isolate else run_inprocess)
    todo = pending_trials(sweep, workdir, shard, num_shards, retry_failed)
    mine = len(shard_trials(sweep.trials, shard, num_shards))
    logging.info("shard %d/%d: %d of %d trials to run", shard, num_shards, len(todo), mine)
    with _Interrupt() as interrupt:
        for n, trial in enumerate(todo):
            twd = trial_workdir(workdir, trial)
            print(f"[{n + 1}/{len(todo)}] trial {trial.index} ({trial.label}) -> {twd}", flush=True)
            t0 = time.time()
            out = runner(sweep, trial, twd, interrupt)
            if out.get("status") == "preempted" or interrupt.requested:
                print(f"interrupted during trial {trial.index}; it resumes on restart.")
                return "interrupted"
            entry = {
                "key": trial.key,
                "index": trial.index,
                "overrides": trial.overrides,
                "tags": trial.tags,
                "workdir": os.path.relpath(twd, workdir),
                "shard": f"{shard}/{num_shards}",
                "driver_wall_time_s": time.time() - t0,
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **out,
            }
            if record:
                results_lib.append_record(path, entry)
            top = out.get("metrics", {}).get(sweep.metric)
            print(f"    {out['status']}" + (f"  {sweep.metric}={top:.2f}" if top else ""))
    return "completed"
