"""gs:// workdirs end to end, against a local Cloud Storage emulator (tests/gcs.py).

The default recipe (shortened) is trained into gs://bucket/.../run, stopped with SIGTERM while
a checkpoint save is in flight, resumed; then evaluated, and weights converted into the
bucket; FixRes and a tiny sweep write their workdirs there too. Each result equals the same
command's on local disk, and nothing lands in a local folder named `gs:` (what `open` and
`os.makedirs` make of a gs:// path).
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from etils import epath

from tests import jax_cache
from tests.gcs import gcs  # noqa: F401
from tests.jax_cache import compilation_cache  # noqa: F401

pytestmark = pytest.mark.usefixtures("compilation_cache")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "--config=configs/default.py"
# The default recipe, a few steps: a checkpoint every 4 (the save of 4 is held, see
# tests/train/fault_worker.py), the final evaluation on 64 test digits.
OVERRIDES = [
    "--config.train.num_steps=12",
    "--config.train.log_every_steps=1",  # every step: the preempted one is logged too
    "--config.ckpt.every_steps=4",
    "--config.data.eval_split=test[:64]",
]


def _env(gcs, cache) -> dict:  # noqa: F811
    return {**os.environ, "PYTHONPATH": REPO, **gcs.env, **jax_cache.env(cache)}


def _run(args, env, cwd=REPO, timeout=600) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    return p


def _no_local_gs_folder(*folders) -> None:
    for folder in (REPO, *folders):
        assert not os.path.exists(os.path.join(folder, "gs:")), f"{folder}/gs: was written"


def _losses(workdir) -> dict[int, float]:
    lines = epath.Path(workdir, "train_metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["train/loss"] for r in map(json.loads, lines) if "train/loss" in r}


def _results(workdir) -> dict:
    return json.loads(epath.Path(workdir, "results.json").read_text())


def _assert_same_weights(a: str, b: str) -> None:
    from cnnx.train.checkpoint import load_variables

    va, vb = load_variables(a), load_variables(b)
    assert jax.tree.structure(va) == jax.tree.structure(vb)
    for x, y in zip(jax.tree.leaves(va), jax.tree.leaves(vb)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_tensorstore_needs_no_credentials_against_the_emulator(gcs, tmp_path):  # noqa: F811
    """With the emulator's variables (README, gs:// section) tensorstore writes and reads an
    array in the bucket and logs no "Could not find the credentials file" error, on a machine
    with no gcloud credentials (an empty CLOUDSDK_CONFIG)."""
    code = (
        "import sys, numpy as np, tensorstore as ts\n"
        "spec = {'driver': 'zarr', 'kvstore': sys.argv[1], 'create': True,\n"
        "        'metadata': {'shape': [4], 'dtype': '<f4'}}\n"
        "t = ts.open(spec).result()\n"
        "t.write(np.arange(4, dtype='f4')).result()\n"
        "print(t.read().result().tolist())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env.update({**gcs.env, "CLOUDSDK_CONFIG": str(tmp_path)})
    p = _run(["-c", code, gcs.folder("array")], env)
    assert p.stdout.strip() == "[0.0, 1.0, 2.0, 3.0]"
    assert "credentials" not in p.stderr, p.stderr


def test_tensorboard_events_reach_the_bucket(gcs):  # noqa: F811
    from cnnx.train import metrics_log

    logdir = gcs.folder("tb")
    writer = mirror = metrics_log.metric_writer(logdir)
    writer.write_scalars(1, {"train/loss": 1.0})
    assert not list(epath.Path(logdir).glob("events.out.tfevents.*"))  # not yet: no flush
    writer.flush()
    (events,) = epath.Path(logdir).glob("events.out.tfevents.*")
    size = events.stat().length
    mirror.every_secs = 0.0  # as after two minutes: a write is copied without a flush
    writer.write_scalars(2, {"train/loss": 0.5})
    assert events.stat().length > size
    writer.close()
    assert not os.path.exists(mirror.local)
    _no_local_gs_folder()


@pytest.fixture(scope="module")
def runs(gcs, compilation_cache, tmp_path_factory):  # noqa: F811
    """(local workdir, gs:// workdir): the same run, straight on disk, and in the bucket
    with a SIGTERM during the save of step 4 and a resume."""
    tmp = tmp_path_factory.mktemp("gcs_runs")
    env = _env(gcs, compilation_cache)
    local, remote = str(tmp / "local"), gcs.folder("run")
    _run(["train.py", CONFIG, f"--workdir={local}", *OVERRIDES], env)

    markers = tmp / "markers"
    markers.mkdir()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.train.fault_worker",
            str(markers),
            CONFIG,
            f"--workdir={remote}",
            *OVERRIDES,
            "--config.train.profile_steps=1,1",  # identity-free: the resume runs without it
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    while not (markers / "holding").exists():
        assert p.poll() is None, f"worker exited first:\n{p.stdout.read()[-4000:]}"
        assert time.time() < deadline, "no checkpoint save began in 300 s"
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    (markers / "release").touch()
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 143, out[-4000:]
    preempted = int(out.split("Preempted at step ")[1].split(";")[0])
    assert 4 <= preempted < 12
    resumed = _run(["train.py", CONFIG, f"--workdir={remote}", *OVERRIDES], env)
    return {
        "local": local,
        "remote": remote,
        "preempted": preempted,
        "env": env,
        "resumed_log": resumed.stdout + resumed.stderr,
    }


@pytest.mark.slow
def test_train_sigterm_resume_in_a_bucket_equals_local(runs):
    local, remote = runs["local"], runs["remote"]
    root = epath.Path(remote)
    assert _results(remote)["status"] == "completed" and _results(remote)["step"] == 12
    # The losses of both segments and the final evaluation are the local run's, bit for bit.
    assert _losses(remote) == _losses(local)
    for key, value in _results(local).items():
        if key.startswith("eval/"):
            assert _results(remote)[key] == value, key
    _assert_same_weights(local, remote)
    # The run's files are in the bucket: checkpoints (the preempted step's too), config,
    # TensorBoard events of both segments; the lock was released.
    steps = sorted(int(p.name) for p in (root / "checkpoints").iterdir() if p.name.isdigit())
    assert runs["preempted"] in steps and steps[-1] == 12
    assert not [p for p in (root / "checkpoints").iterdir() if "tmp" in p.name]
    assert json.loads((root / "config.json").read_text())["model"]["name"] == "lenet5"
    assert len(list(root.glob("events.out.tfevents.*"))) == 2
    assert list((root / "profile").glob("plugins/profile/*/*.xplane.pb"))
    assert not (root / "lock").exists()
    _no_local_gs_folder()


@pytest.mark.slow
@pytest.mark.torch
def test_convert_weights_into_a_bucket_equals_local(gcs, compilation_cache, tmp_path):  # noqa: F811
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    env = _env(gcs, compilation_cache)
    source = tmp_path / "mnv2.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2(num_classes=10).state_dict(), source)
    remote_source = gcs.folder("mnv2.pth")
    epath.Path(remote_source).write_bytes(source.read_bytes())
    local, remote = str(tmp_path / "converted"), gcs.folder("converted")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    script = os.path.join(REPO, "scripts", "convert_weights.py")
    flags = ["--model=mobilenet_v2", "--num_classes=10"]
    _run([script, *flags, f"--torch_weights={source}", f"--workdir={local}"], env, cwd=cwd)
    _run([script, *flags, f"--torch_weights={remote_source}", f"--workdir={remote}"], env, cwd=cwd)
    _assert_same_weights(local, remote)
    config = epath.Path(remote, "config.json").read_text()
    assert config == epath.Path(local, "config.json").read_text()
    # A second conversion into the same place is refused: it already holds checkpoints.
    again = [
        sys.executable,
        script,
        *flags,
        f"--torch_weights={remote_source}",
        f"--workdir={remote}",
    ]
    p = subprocess.run(again, cwd=cwd, env=env, capture_output=True, text=True)
    assert p.returncode == 2 and "already holds checkpoints" in p.stderr
    _no_local_gs_folder(cwd)


# --- Legs through other entry points (eval.py, FixRes, sweeps) -------------------------------


@pytest.mark.slow
def test_eval_of_a_bucket_run_equals_local(runs, tmp_path):
    env = runs["env"]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    outputs = {}
    for name in ("local", "remote"):
        output = f"{runs[name]}/eval_check.json"
        _run(
            [os.path.join(REPO, "eval.py"), f"--workdir={runs[name]}", f"--output={output}"],
            env,
            cwd=cwd,
        )
        outputs[name] = json.loads(epath.Path(output).read_text())
    local, remote = outputs["local"], outputs["remote"]
    for key in ("top1", "top5", "loss", "eval/top1", "eval/loss"):
        if key in local:
            assert remote[key] == local[key], key
    # The default output name (in the workdir) works on gs:// too.
    _run([os.path.join(REPO, "eval.py"), f"--workdir={runs['remote']}"], env, cwd=cwd)
    assert list(epath.Path(runs["remote"]).glob("eval_*.json"))
    _no_local_gs_folder(cwd)


@pytest.mark.slow
def test_fixres_in_a_bucket_equals_local(gcs, compilation_cache, tmp_path):  # noqa: F811
    env = _env(gcs, compilation_cache)
    args = [
        "scripts/fixres.py",
        "--config=configs/sweeps/fixres.py:digits",
        "--config.train.train.num_steps=4",
        "--config.finetune.steps=2",
        "--config.test_resolutions=(20,24)",
    ]
    local, remote = str(tmp_path / "fixres"), gcs.folder("fixres")
    _run([*args, f"--workdir={local}"], env)
    _run([*args, f"--workdir={remote}"], env)
    a = json.loads(epath.Path(local, "fixres.json").read_text())
    b = json.loads(epath.Path(remote, "fixres.json").read_text())
    assert a == b
    for name in ("fixres.md", "fixres.png"):
        assert epath.Path(remote, name).stat().length > 0
    _no_local_gs_folder()


@pytest.mark.slow
def test_sweep_in_a_bucket_equals_local(gcs, compilation_cache, tmp_path):  # noqa: F811
    env = _env(gcs, compilation_cache)
    args = ["scripts/sweep.py", "--sweep=tests/sweeps/sweep_fixture.py:steps=4"]
    local, remote = str(tmp_path / "sweep"), gcs.folder("sweep")
    _run([*args, f"--workdir={local}"], env)
    # A journal needs a file lock, which Cloud Storage has not: the study on local disk (one
    # VM), the sweep's files in the bucket.
    _run([*args, f"--workdir={remote}", f"--storage={tmp_path / 'study.journal'}"], env)
    a = json.loads(epath.Path(local, "summary.json").read_text())
    b = json.loads(epath.Path(remote, "summary.json").read_text())
    # One record per trial (the summary's 'best' repeats one); trial paths and times differ.
    assert len(_top1s(a["records"])) == 3 and _top1s(b["records"]) == _top1s(a["records"])
    assert epath.Path(remote, "summary.md").exists()
    _no_local_gs_folder()


def _top1s(summary) -> list:
    """The trials' eval/top1 values, wherever the summary keeps them."""
    found = []

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "eval/top1":
                    found.append(v)
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(summary)
    return sorted(found)
