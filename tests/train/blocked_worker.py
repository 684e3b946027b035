"""train.py whose main thread blocks in C after SIGTERM, with a save in flight (spawned by
test_preemption_blocked.py).

usage: python -m tests.train.blocked_worker HOLD_STEP BLOCK_STEP [train.py flags...]

The background commit of the checkpoint of HOLD_STEP never finishes (orbax has written its
arrays into `<step>.orbax-checkpoint-tmp` and waits to rename it). After step BLOCK_STEP the
process sends itself SIGTERM and its main thread locks a mutex it holds (blocked in C for
good), where no Python signal handler can run (as in a device transfer or a hung
collective). Everything else is
the real train.py.
"""

import asyncio
import ctypes
import os
import signal
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
hold_step, block_step = int(sys.argv[1]), int(sys.argv[2])
sys.argv = [os.path.join(REPO, "train.py"), *sys.argv[3:]]
sys.path.insert(0, REPO)
os.chdir(REPO)

from orbax.checkpoint._src.path import atomicity  # noqa: E402

_commit = atomicity.on_commit_callback


async def _held_commit(tmp_dir, **kwargs):
    if tmp_dir.get_final().name == str(hold_step):
        await asyncio.sleep(3600)  # the save stays in flight until the process ends
    return await _commit(tmp_dir, **kwargs)


atomicity.on_commit_callback = _held_commit

from absl import app  # noqa: E402

import train  # noqa: E402
from cnnx.cli import parse_flags  # noqa: E402
from cnnx.train import loop  # noqa: E402

_train_and_evaluate = loop.train_and_evaluate


def _block(step: int) -> None:
    if step == block_step:
        print(f"SIGTERM after step {step}; the main thread now blocks in C", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        mutex = ctypes.create_string_buffer(64)
        ctypes.CDLL(None).pthread_mutex_lock(mutex)
        ctypes.CDLL(None).pthread_mutex_lock(mutex)  # never returns


loop.train_and_evaluate = lambda *a, **kw: _train_and_evaluate(*a, step_callback=_block, **kw)
app.run(lambda argv: sys.exit(train.main(argv)), flags_parser=parse_flags)
