"""Running one trial: in a subprocess (the default) or in this process.

Each trial runs in a subprocess (`python -m cnnx.sweeps.worker`) by default. Why: a trial that
crashes the interpreter (XLA abort, segfault, out-of-memory kill) then costs one trial, not the
sweep worker; every trial starts with a fresh device and a fresh compilation cache, so memory
does not pile up over dozens of differently shaped models; and the worker stays small, so
killing and restarting it is cheap. The price is a few seconds of imports per trial, nothing
beside a training run. `run_inprocess` runs trials in-process (tests, multi-process slices).

Which trial runs when, and the record of what ran, is the study's business (`study.py`). The
child is tied to its worker (PR_SET_PDEATHSIG on Linux), so a killed worker leaves no orphan
trainer writing into a trial folder that the retried trial reuses.
"""

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import traceback

from etils import epath

from cnnx.errors import CnnxError
from cnnx.sweeps.spec import Sweep, Trial, apply_overrides
from cnnx.sweeps.worker import RESULT_FILE
from cnnx.train.workdir import is_remote

TRIALS_DIR = "trials"


def trial_workdir(workdir: str, trial: Trial) -> str:
    """`<workdir>/trials/<swept values>-<key>`: one training workdir per trial (`Trial.dirname`)."""
    return str(epath.Path(workdir) / TRIALS_DIR / trial.dirname)


def _libc():
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


# Loaded here, in the parent: the child between fork and exec only calls into it (loading a
# library there could wait forever on a lock another thread of the parent held at the fork).
_LIBC = _libc()


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGKILL when the worker dies (Linux only)."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


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
    """Runs a trial in a child process; its output is appended to `<workdir>/trial.log`.

    Returns:
      The trial's result (`worker.run_trial`), {'status': 'preempted'} when interrupted, or
      {'status': 'failed', 'returncode', 'error': the log's tail}.
    """
    wd = epath.Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    result_path = wd / RESULT_FILE
    if result_path.exists():
        result_path.unlink()  # from an earlier, unrecorded attempt
    cmd = [
        sys.executable,
        "-m",
        "cnnx.sweeps.worker",
        f"--sweep={sweep.ref}",
        f"--overrides={json.dumps(trial.overrides, sort_keys=True)}",
        f"--index={trial.index}",
        f"--workdir={workdir}",
    ]
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    # A child writes its output to a local file; on gs:// it is copied up afterwards.
    remote = is_remote(workdir)
    log_path = (
        tempfile.mkstemp(prefix="cnnx-trial-", suffix=".log")[1]
        if remote
        else str(wd / "trial.log")
    )
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
        )
        interrupt.child = proc
        rc = proc.wait()
        interrupt.child = None
    tail = _tail(log_path)
    if remote:
        target = wd / "trial.log"
        old = target.read_bytes() if target.exists() else b""
        with open(log_path, "rb") as f:
            target.write_bytes(old + f.read())
        os.unlink(log_path)
    if rc == 0 and result_path.exists():
        return json.loads(result_path.read_text())
    if interrupt.requested or rc == 143:
        return {"status": "preempted"}
    return {"status": "failed", "returncode": rc, "error": tail}


def run_inprocess(sweep: Sweep, trial: Trial, workdir: str, interrupt: _Interrupt) -> dict:
    """Runs a trial in this process (no crash isolation); exceptions become 'failed'."""
    del interrupt
    from cnnx.sweeps.worker import run_trial

    try:
        return run_trial(
            apply_overrides(sweep.base, trial.overrides),
            workdir,
            hparams={**trial.overrides, **trial.tags},
        )
    except CnnxError as e:  # said in one line, as the subprocess worker prints it
        return {"status": "failed", "error": f"error: {e}"}
    except Exception as e:
        return {"status": "failed", "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"}
