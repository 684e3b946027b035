"""SIGTERM to a run of two processes (jax.distributed on localhost, gloo CPU collectives) at
different steps, as `scripts/tpu/stop.sh` signals a pod's workers one after the other: both
processes stop at the same step, save it together and exit 143, and the resumed run ends
bit-identical to an uninterrupted one."""

import json
import os

import jax
import numpy as np
import pytest

from cnnx.checkpoint_eval import restore_state
from tests.multiprocess import start, wait
from tests.train.tiny import tiny_config

# 2 processes x 2 devices, the weights sharded over both (FSDP): a save is collective.
FLAGS = [
    "--config=tests/train/tiny.py",
    "--config.mesh.data=1",
    "--config.mesh.fsdp=4",
    "--config.mesh.fsdp_min_size=64",
    "--config.ckpt.every_steps=100",  # only the preemption and the final step save
]


def _losses(workdir):
    with open(os.path.join(workdir, "train_metrics.jsonl")) as f:
        return {m["step"]: m["train/loss"] for m in map(json.loads, f)}


def _steps(workdir):
    return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


@pytest.mark.slow
def test_sigterm_at_different_steps_stops_every_process_at_one_step(tmp_path):
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    procs = start(["train.py", *FLAGS, f"--workdir={straight}"], num_processes=2, devices=2)
    # Process 0 gets SIGTERM after step 3, process 1 after step 6.
    worker = ["-m", "tests.train.preemption_worker", "3,6"]
    procs += start([*worker, *FLAGS, f"--workdir={stopped}"], num_processes=2, devices=2)
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs[:2]] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    for p, out in zip(procs[2:], outs[2:]):
        assert p.returncode == 143, out[-3000:]
    # Both saved the one step the processes agreed on (JAX's preemption service: the largest
    # step any process had reported when the notice spread, plus one: step 3 itself when the
    # notice outran process 0's report of step 3, as on a loaded host).
    (stop,) = _steps(stopped)
    assert 3 <= stop < 12
    for out in outs[2:]:
        assert f"SIGTERM: saved checkpoint at step {stop}; exiting." in out
    with open(os.path.join(stopped, "results.json")) as f:
        assert json.load(f)["status"] == "preempted"

    wait(start(["train.py", *FLAGS, f"--workdir={stopped}"], num_processes=2, devices=2))
    assert _losses(stopped) == _losses(straight)
    config = tiny_config()
    _, a = restore_state(config, straight)
    _, b = restore_state(config, stopped)
    assert int(a.step) == int(b.step) == 12
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_without_jax_preemption_service_the_processes_agree_by_all_gather(tmp_path):
    stopped = str(tmp_path / "stopped")
    worker = ["-m", "tests.train.preemption_worker", "3,6"]
    env = {"JAX_ENABLE_PREEMPTION_SERVICE": "false"}
    procs = start([*worker, *FLAGS, f"--workdir={stopped}"], num_processes=2, devices=2, env=env)
    for p in procs:
        out = p.communicate(timeout=600)[0]
        assert p.returncode == 143, out[-3000:]
        assert "agree on a SIGTERM through an all-gather" in out
    assert _steps(stopped) == [3]  # the first notice, on every process at once
