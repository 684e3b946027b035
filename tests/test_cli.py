"""train.py / eval.py as users run them: end to end, and bad input failing cleanly."""

import json
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    start = time.time()
    p = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    return p, time.time() - start


BAD_INPUT = {
    "imagenet_missing": (
        ["train.py", "--config=configs/resnet.py:50", "--config.data.data_dir={tmp}"],
        ["imagenet2012", "{tmp}", "manual", "python -m cnnx.data.prepare imagenet2012"],
    ),
    "misspelled_override": (
        ["train.py", "--config=configs/default.py", "--config.optim.lerning_rate=1"],
        ["lerning_rate", "base_lr"],
    ),
    "unknown_model": (
        ["train.py", "--config=configs/default.py", "--config.model.name=resnet05"],
        ["resnet05", "resnet50"],
    ),
    "missing_folder": (
        ["train.py", "--config=configs/default.py", "--config.data.source=folder:{tmp}/none"],
        ["does not exist", "{tmp}/none"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_fast_and_clearly(case, tmp_path):
    args, expected = BAD_INPUT[case]
    args = [a.format(tmp=tmp_path) for a in args] + [f"--workdir={tmp_path}/wd"]
    p, seconds = _run(args, timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr + p.stdout
    for text in expected:
        assert text.format(tmp=tmp_path) in p.stderr, p.stderr[-2000:]
    assert seconds < 60
    assert not os.path.exists(tmp_path / "wd" / "checkpoints")


def test_workdir_is_required(tmp_path):
    p, seconds = _run(["train.py", "--config=configs/default.py"], timeout=120)
    assert p.returncode == 2 and "error: --workdir is required" in p.stderr, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and seconds < 60
    assert not os.path.exists(os.path.join(REPO, "workdirs", "lenet5", "lock"))


def test_workdir_in_use_is_refused_naming_the_holder(tmp_path):
    """A second writer: the lock of a live process on this host (here a sleeping one)."""
    import socket

    wd = tmp_path / "wd"
    wd.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = {
            "host": socket.gethostname(),
            "pid": holder.pid,
            "started": "earlier",
            "command": "train.py --workdir=wd",
        }
        (wd / "lock").write_text(json.dumps(lock))
        p, _ = _run(["train.py", "--config=configs/default.py:smoke", f"--workdir={wd}"])
    finally:
        holder.kill()
        holder.wait()
    assert p.returncode == 2, p.stderr[-2000:]
    assert f"in use by pid {holder.pid} on {socket.gethostname()}" in p.stderr
    assert "Traceback" not in p.stderr
    assert sorted(os.listdir(wd)) == ["lock"]  # nothing written; the holder's lock kept
    assert json.loads((wd / "lock").read_text()) == lock


@pytest.mark.slow
def test_train_then_eval_end_to_end(tmp_path):
    wd = str(tmp_path / "wd")
    p, _ = _run(["train.py", "--config=configs/default.py:smoke", f"--workdir={wd}"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "eval top-1" in p.stdout
    assert p.stdout.rstrip().endswith("[smoke run: digits, a few steps; not a result]")
    with open(os.path.join(wd, "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(wd, "results.json"), "rb") as f:
        record = f.read()
    # The same command again: the run is finished, said in one line; results.json untouched.
    p, _ = _run(["train.py", "--config=configs/default.py:smoke", f"--workdir={wd}"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("\n") == 1 and "holds a finished run of lenet5" in p.stdout
    # Another config on it (the full default after the smoke run): refused, nothing changed.
    p, _ = _run(["train.py", "--config=configs/default.py", f"--workdir={wd}"])
    assert p.returncode == 2 and "holds another run" in p.stderr, p.stderr[-3000:]
    assert "train.num_steps: 6 -> null" in p.stderr and "Traceback" not in p.stderr
    with open(os.path.join(wd, "results.json"), "rb") as f:
        assert f.read() == record
    assert not os.path.exists(os.path.join(wd, "lock"))
    p, _ = _run(["eval.py", f"--workdir={wd}", "--split=test[:50]", "--image_size=36"])
    assert p.returncode == 0, p.stderr[-3000:]
    with open(os.path.join(wd, f"eval_test[:50]_36_step{results['step']}.json")) as f:
        out = json.load(f)
    assert out["eval/examples"] == 50 and out["image_size"] == 36
    assert out["step"] == results["step"]
    # eval.py on a workdir without checkpoints is a clear error, not a traceback.
    p, _ = _run(["eval.py", f"--workdir={tmp_path}", "--config=configs/default.py"])
    assert p.returncode == 2 and "No checkpoint" in p.stderr and "Traceback" not in p.stderr
