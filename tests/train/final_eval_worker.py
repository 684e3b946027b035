"""train.py that waits at the start of its final evaluation (spawned by test_run_identity).

usage: python -m tests.train.final_eval_worker MARKER_DIR [train.py flags...]

Before the first evaluation of the process (with tests/train/tiny.py: the final one, 12 steps
being less than an epoch) it writes MARKER_DIR/evaluating and waits for MARKER_DIR/release,
so the test can send SIGTERM while the final evaluation is provably under way.
"""

import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
marker_dir = sys.argv[1]
sys.argv = [os.path.join(REPO, "train.py"), *sys.argv[2:]]
sys.path.insert(0, REPO)
os.chdir(REPO)

from cnnx.train import build  # noqa: E402

_evaluate = build.evaluate_state


def _held_evaluate(*args, **kwargs):
    open(os.path.join(marker_dir, "evaluating"), "w").close()
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(marker_dir, "release")) and time.time() < deadline:
        time.sleep(0.05)
    return _evaluate(*args, **kwargs)


build.evaluate_state = _held_evaluate

from absl import app  # noqa: E402

import train  # noqa: E402
from cnnx.cli import parse_flags  # noqa: E402

app.run(lambda argv: sys.exit(train.main(argv)), flags_parser=parse_flags)
