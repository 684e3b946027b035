"""Two processes on localhost (gloo CPU collectives, 2 fake devices each), with parameters and
optimizer state sharded over all 4 devices of both processes (FSDP), train exactly like one
data-parallel process with 4 devices; only process 0 writes logs; every process takes part in
checkpoints."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Every LeNet-5 parameter with at least 64 elements is sharded over the 'fsdp' axis, which spans
# both processes (mesh data=1 × fsdp=4): the weights live split across hosts. The batch is split
# into the same 4 blocks as with data=4, so the two runs compute the same numbers. (A plain
# data-parallel 2-process run is a subset of this one; it is left out to keep the test short.)
FSDP = ("mesh.data=1", "mesh.fsdp=4", "mesh.fsdp_min_size=64")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _spawn(num_processes, process_id, devices, workdir, port, overrides=()):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = REPO
    return subprocess.Popen(
        [sys.executable, "-m", "tests.train.multiprocess_worker", str(port), str(num_processes),
         str(process_id), str(devices), workdir, *overrides],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _losses(workdir):
    with open(os.path.join(workdir, "train_metrics.jsonl")) as f:
        return [json.loads(line)["train/loss"] for line in f]


@pytest.mark.slow
def test_two_processes_with_fsdp_match_one_data_parallel(tmp_path):
    single = str(tmp_path / "single")
    multi = str(tmp_path / "multi")
    procs = [_spawn(1, 0, 4, single, _free_port())]
    port = _free_port()
    procs += [_spawn(2, i, 2, multi, port, FSDP) for i in range(2)]
    outputs = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        outputs.append(out)
        assert p.returncode == 0, out[-3000:]
    assert "RESULT 0 1 4 6" in outputs[0]
    assert "RESULT 0 2 4 6" in outputs[1] and "RESULT 1 2 4 6" in outputs[2]
    np.testing.assert_allclose(_losses(single), _losses(multi), rtol=1e-5)
    for out in outputs[1:]:  # each process holds a quarter of 6 of the 14 parameter tensors
        assert "{'data': 1, 'fsdp': 4, 'model': 1}: 6 of 14 parameter tensors sharded" in out
    # Only process 0 wrote logs and results; the checkpoint of the final step is complete.
    assert os.path.exists(os.path.join(multi, "results.json"))
    assert os.path.isdir(os.path.join(multi, "checkpoints", "6"))
