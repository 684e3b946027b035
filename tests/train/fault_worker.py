"""train.py with one test hook: hold a checkpoint save half-way (spawned by test_faults.py).

usage: python -m tests.train.fault_worker MARKER_DIR|- [train.py flags...]

The hook holds the first checkpoint commit of the process: orbax has written every array
into `<step>.orbax-checkpoint-tmp` and is about to rename it. The worker writes the step
into MARKER_DIR/holding and waits for MARKER_DIR/release, so the test can send SIGTERM or
SIGKILL while a save is provably in flight. Everything else is the real train.py.
"""

import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
marker_dir = sys.argv[1]
sys.argv = [os.path.join(REPO, "train.py"), *sys.argv[2:]]
sys.path.insert(0, REPO)
os.chdir(REPO)

from orbax.checkpoint._src.path import atomicity  # noqa: E402

_commit = atomicity.on_commit_callback
_held = []


async def _held_commit(tmp_dir, **kwargs):
    if not _held:
        _held.append(tmp_dir.get_final().name)
        with open(os.path.join(marker_dir, "holding.tmp"), "w") as f:
            f.write(_held[0])
        os.replace(os.path.join(marker_dir, "holding.tmp"), os.path.join(marker_dir, "holding"))
        deadline = time.time() + 120
        while not os.path.exists(os.path.join(marker_dir, "release")) and time.time() < deadline:
            time.sleep(0.05)
    return await _commit(tmp_dir, **kwargs)


if marker_dir != "-":
    atomicity.on_commit_callback = _held_commit

from absl import app  # noqa: E402

import train  # noqa: E402
from cnnx.cli import parse_flags  # noqa: E402

app.run(lambda argv: sys.exit(train.main(argv)), flags_parser=parse_flags)
