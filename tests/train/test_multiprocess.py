"""Two processes on localhost (gloo CPU collectives, 2 fake devices each) train exactly like one
process with 4 devices; only process 0 writes logs; every process takes part in checkpoints."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _spawn(num_processes, process_id, devices, workdir, port):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = REPO
    return subprocess.Popen(
        [sys.executable, "-m", "tests.train.multiprocess_worker", str(port), str(num_processes),
         str(process_id), str(devices), workdir],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _losses(workdir):
    with open(os.path.join(workdir, "train_metrics.jsonl")) as f:
        return [json.loads(line)["train/loss"] for line in f]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single = str(tmp_path / "single")
    multi = str(tmp_path / "multi")
    port = _free_port()
    procs = [_spawn(1, 0, 4, single, port)]
    port2 = _free_port()
    procs += [_spawn(2, i, 2, multi, port2) for i in range(2)]
    outputs = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        outputs.append(out)
        assert p.returncode == 0, out[-3000:]
    assert "RESULT 0 1 4 6" in outputs[0]
    assert "RESULT 0 2 4 6" in outputs[1] and "RESULT 1 2 4 6" in outputs[2]
    np.testing.assert_allclose(_losses(single), _losses(multi), rtol=1e-4)
    # Only process 0 wrote logs and results; the checkpoint of the final step is complete.
    assert os.path.exists(os.path.join(multi, "results.json"))
    assert os.path.isdir(os.path.join(multi, "checkpoints", "6"))
