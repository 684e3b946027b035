"""train.py with the fault matrix's hooks, chosen by the JSON in $CNNX_FAULT.

usage: CNNX_FAULT='{"signal_at": [5], "signal": "TERM"}' python scripts/faults/worker.py FLAGS

Everything is the real train.py; the hooks only act at step boundaries (`step_callback`) or
when orbax commits a save:
  signal_at: [STEP, ...]  send `signal` (TERM, INT, KILL) to itself after that step (one step
                          per process: process i takes entry i, the last one if fewer)
  signal_in_save: SIG     send SIG to itself while the first save (of `save_step`, if given)
                          has written its arrays and is about to be renamed into place
  nan_at: [STEP, ...]     a NaN pixel in the batch of each of these (1-based) steps
  sleep_s: S              sleep S seconds after each step (a slow run others can meet)
  pause_at: STEP          after STEP, write MARKER/at and wait for MARKER/go (`marker`)
  fsize_at: [STEP, BYTES] from STEP (0: the start) on, no file may grow past BYTES
                          (RLIMIT_FSIZE: the kernel fails writes as on a full disk)
"""

import json
import os
import resource
import signal
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAULT = json.loads(os.environ.get("CNNX_FAULT", "{}"))
sys.argv = [os.path.join(REPO, "train.py"), *sys.argv[1:]]
sys.path.insert(0, REPO)
os.chdir(REPO)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402

import train  # noqa: E402
from cnnx.cli import parse_flags  # noqa: E402
from cnnx.train import build, loop  # noqa: E402


def _signal(name: str) -> None:
    for _ in range(FAULT.get("repeat", 1)):
        print(f"fault: SIG{name} to itself", flush=True)
        os.kill(os.getpid(), getattr(signal, f"SIG{name}"))


def _limit_file_size(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))


def _after_step(step: int) -> None:
    if "signal_at" in FAULT:
        steps = FAULT["signal_at"]
        if step == steps[min(jax.process_index(), len(steps) - 1)]:
            _signal(FAULT.get("signal", "TERM"))
    if "fsize_at" in FAULT and step == FAULT["fsize_at"][0]:
        _limit_file_size(FAULT["fsize_at"][1])
    if FAULT.get("pause_at") == step:
        marker = FAULT["marker"]
        open(os.path.join(marker, "at"), "w").close()
        while not os.path.exists(os.path.join(marker, "go")):
            time.sleep(0.05)
    if FAULT.get("sleep_s"):
        time.sleep(FAULT["sleep_s"])


class _Poisoned:
    """A TrainInput whose batches at the given (1-based) steps carry a NaN pixel."""

    def __init__(self, inner, bad_steps):
        self.inner, self.bad = inner, set(bad_steps)
        self.steps_per_epoch = inner.steps_per_epoch

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def iterate(self, start_step):
        for step, batch in enumerate(self.inner.iterate(start_step), start=start_step + 1):
            if step in self.bad:
                batch = {**batch, "image": np.array(batch["image"], copy=True)}
                batch["image"][0, 0, 0, 0] = np.nan
            yield batch


if FAULT.get("fsize_at", [None])[0] == 0:  # from the start: the logs' first writes fail
    _limit_file_size(FAULT["fsize_at"][1])
if "nan_at" in FAULT:
    _make_input = build.make_train_input
    build.make_train_input = lambda e: _Poisoned(_make_input(e), FAULT["nan_at"])

if "signal_in_save" in FAULT:
    from orbax.checkpoint._src.path import atomicity

    _commit = atomicity.on_commit_callback

    async def _commit_then_signal(tmp_dir, **kwargs):
        step = tmp_dir.get_final().name
        if str(FAULT.get("save_step", step)) == step:
            _signal(FAULT["signal_in_save"])
        return await _commit(tmp_dir, **kwargs)

    atomicity.on_commit_callback = _commit_then_signal

_train_and_evaluate = loop.train_and_evaluate
loop.train_and_evaluate = lambda *a, **kw: _train_and_evaluate(*a, step_callback=_after_step, **kw)
app.run(lambda argv: sys.exit(train.main(argv)), flags_parser=parse_flags)
