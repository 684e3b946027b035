"""train.py that sends itself SIGTERM after a given step (spawned by test_preemption.py).

usage: python -m tests.train.preemption_worker STEP0,STEP1,... [train.py flags...]

Process i (`jax.process_index()`) signals itself after its host has run step STEPi, as
`scripts/tpu/stop.sh` does to the workers of a pod one after the other: the processes get
the notice at different steps. Everything else is the real train.py.
"""

import os
import signal
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
signal_steps = [int(s) for s in sys.argv[1].split(",")]
sys.argv = [os.path.join(REPO, "train.py"), *sys.argv[2:]]
sys.path.insert(0, REPO)
os.chdir(REPO)

import jax  # noqa: E402
from absl import app  # noqa: E402

import train  # noqa: E402
from cnnx.cli import parse_flags  # noqa: E402
from cnnx.train import loop  # noqa: E402

_train_and_evaluate = loop.train_and_evaluate


def _signal_self(step: int) -> None:
    if step == signal_steps[jax.process_index()]:
        print(f"process {jax.process_index()}: SIGTERM after step {step}", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)


loop.train_and_evaluate = lambda *a, **kw: _train_and_evaluate(*a, step_callback=_signal_self, **kw)
app.run(lambda argv: sys.exit(train.main(argv)), flags_parser=parse_flags)
