"""A trial whose config `setup` refuses fails with one `error:` line (issue 33 item 7: a
traceback in trial.log), in the subprocess worker and in process."""

import json
import subprocess
import sys

from cnnx.sweeps import runner
from cnnx.sweeps.spec import load_sweep
from tests.multiprocess import REPO, cpu_env

SWEEP = "tests/sweeps/sweep_fixture.py:n=1,data=3"  # a mesh of 3 on 1 or 8 devices
TRIAL = {"model.width_mult": 0.5}  # the grid's first trial


def test_a_refused_trial_config_is_one_error_line_in_the_worker(tmp_path):
    command = [
        sys.executable,
        "-m",
        "cnnx.sweeps.worker",
        f"--sweep={SWEEP}",
        f"--overrides={json.dumps(TRIAL)}",
        f"--workdir={tmp_path / 'trial'}",
    ]
    done = subprocess.run(command, cwd=REPO, env=cpu_env(1), capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: The mesh data×fsdp×model")


def test_a_refused_trial_config_is_one_error_line_in_process(tmp_path):
    sweep = load_sweep(SWEEP)
    trial = sweep.make_trial(TRIAL, 0)
    out = runner.run_inprocess(sweep, trial, str(tmp_path / "trial"), None)
    assert out["status"] == "failed"
    assert out["error"].startswith("error: --config.train.batch_size=32 does not divide")
    assert "Traceback" not in out["error"]
