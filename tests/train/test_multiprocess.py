"""train.py as two processes on localhost (gloo CPU collectives, 2 fake devices each), with
parameters and optimizer state sharded over all 4 devices of both processes (FSDP), trains
exactly like one data-parallel process with 4 devices; only process 0 writes logs; every
process takes part in checkpoints."""

import json
import os

import numpy as np
import pytest

from tests.multiprocess import start, wait

# Every LeNet-5 parameter with at least 64 elements is sharded over the 'fsdp' axis, which spans
# both processes (mesh data=1 × fsdp=4): the weights live split across hosts. The batch is split
# into the same 4 blocks as with data=4, so the two runs compute the same numbers. (A plain
# data-parallel 2-process run is a subset of this one; it is left out to keep the test short.)
FSDP = ["--config.mesh.data=1", "--config.mesh.fsdp=4", "--config.mesh.fsdp_min_size=64"]


def _train_py(workdir, *overrides):
    return [
        "train.py",
        "--config=tests/train/tiny.py",
        "--config.train.num_steps=6",
        f"--workdir={workdir}",
        *overrides,
    ]


def _losses(workdir):
    with open(os.path.join(workdir, "train_metrics.jsonl")) as f:
        return [json.loads(line)["train/loss"] for line in f]


@pytest.mark.slow
def test_two_processes_with_fsdp_match_one_data_parallel(tmp_path):
    single = str(tmp_path / "single")
    multi = str(tmp_path / "multi")
    procs = start(_train_py(single), num_processes=1, devices=4)
    procs += start(_train_py(multi, *FSDP), num_processes=2, devices=2)
    outputs = wait(procs)
    np.testing.assert_allclose(_losses(single), _losses(multi), rtol=1e-5)
    for out in outputs[1:]:  # each process holds a quarter of 6 of the 14 parameter tensors
        assert "{'data': 1, 'fsdp': 4, 'model': 1}: 6 of 14 parameter tensors sharded" in out
    # Only process 0 wrote logs and results; the checkpoint of the final step is complete.
    with open(os.path.join(multi, "results.json")) as f:
        assert json.load(f)["step"] == 6
    assert os.path.isdir(os.path.join(multi, "checkpoints", "6"))
