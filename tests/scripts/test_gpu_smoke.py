"""scripts/gpu_smoke.sh: in DRY_RUN mode it prints the install, the device check and the runs,
with the Python it picks ($PYTHON, make install's venv, or the python3 on the PATH); with
PLATFORM=cpu it runs for real on this machine's CPU."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SETTINGS = ("PYTHON", "VENV", "SKIP_INSTALL", "DRY_RUN", "PLATFORM", "CONFIGS", "STEPS", "BATCH")


def _smoke(dry_run=True, **env):
    full = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    full.update({"DRY_RUN": "1"} if dry_run else {})
    full.update(env)
    p = subprocess.run(
        ["bash", os.path.join(REPO, "scripts/gpu_smoke.sh")],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    if not dry_run:
        return p
    return [line[2:] for line in p.stdout.splitlines() if line.startswith("+ ")]


def _jax_version():
    with open(os.path.join(REPO, "requirements.txt")) as f:
        return next(x.split("==")[1].strip() for x in f if x.startswith("jax=="))


def test_gpu_smoke_dry_run_prints_install_check_and_runs():
    lines = _smoke(STEPS="7", BATCH="32")
    assert lines[:2] == [
        "make install",
        f".venv/bin/python -m pip install -q -U jax\\[cuda12\\]=={_jax_version()}",
    ]
    assert "jax.devices()" in lines[2] and lines[2].endswith(" gpu")
    runs = [x for x in lines if x.startswith(".venv/bin/python train.py")]
    families = ("default.py", "resnet.py", "efficientnet_b0.py", "convnext.py", "inception_v3.py")
    assert len(runs) >= 5 and all(any(f in r for r in runs) for f in families)
    assert all("--config.train.num_steps=7 --config.train.batch_size=32" in r for r in runs)
    assert lines[-1].startswith(".venv/bin/python - ")  # the throughput table


def test_gpu_smoke_picks_its_python(tmp_path):
    """$PYTHON runs everything (and is installed into unless SKIP_INSTALL=1); without it,
    SKIP_INSTALL=1 takes the venv when there is one, else the python3 on the PATH."""
    lines = _smoke(PYTHON="/opt/env/bin/python", CONFIGS="default.py:smoke")
    assert lines[:3] == [
        "/opt/env/bin/python -m pip install -q -r requirements.txt",
        "/opt/env/bin/python -m pip install -q --no-deps -e .",
        f"/opt/env/bin/python -m pip install -q -U jax\\[cuda12\\]=={_jax_version()}",
    ]
    assert all(x.startswith(("/opt/env/bin/python ", "rm -rf ")) for x in lines)
    lines = _smoke(PYTHON="/opt/env/bin/python", SKIP_INSTALL="1", CONFIGS="default.py:smoke")
    assert lines[0].startswith("/opt/env/bin/python -c ") and "pip" not in " ".join(lines)
    no_venv = _smoke(VENV=str(tmp_path / "none"), SKIP_INSTALL="1", CONFIGS="default.py:smoke")
    assert [x.split()[0] for x in no_venv] == ["python3", "rm", "python3", "python3"]
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    os.symlink(sys.executable, venv / "bin" / "python")
    lines = _smoke(VENV=str(venv), SKIP_INSTALL="1", CONFIGS="default.py:smoke")
    assert lines[0].startswith(f"{venv}/bin/python -c ")
    lines = _smoke(VENV=str(venv), CONFIGS="default.py:smoke")  # installs: make makes that venv
    assert lines[:2] == [
        f"make install VENV={venv}",
        f"{venv}/bin/python -m pip install -q -U jax\\[cuda12\\]=={_jax_version()}",
    ]


@pytest.mark.slow  # trains LeNet-5 for 3 steps through train.py (~20 s)
def test_gpu_smoke_runs_on_the_cpu(tmp_path):
    """The whole flow with this Python and no install: device check, a run, the table."""
    p = _smoke(
        dry_run=False,
        PLATFORM="cpu",
        SKIP_INSTALL="1",
        PYTHON=sys.executable,
        CONFIGS="default.py:smoke",
        STEPS="3",
        BATCH="8",
        WORKDIR=str(tmp_path),
    )
    assert f"{sys.executable}: jax " in p.stdout
    table = p.stdout.splitlines()[-2:]
    assert table[0].split()[:3] == ["config", "model", "img/s"]
    assert table[1].split()[:2] == ["default.py:smoke", "lenet5"]
    with open(tmp_path / "default_py_smoke" / "results.json") as f:
        assert json.load(f)["step"] == 3
