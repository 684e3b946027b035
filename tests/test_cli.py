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
    p = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=timeout)  # fmt: skip
    return p, time.time() - start


BAD_INPUT = {
    "imagenet_missing": (
        ["train.py", "--config=configs/resnet.py:50", "--config.data.data_dir={tmp}"],
        ["imagenet2012", "{tmp}", "manual", "tfds build"],
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


@pytest.mark.slow
def test_train_then_eval_end_to_end(tmp_path):
    wd = str(tmp_path / "wd")
    p, _ = _run(["train.py", "--config=configs/default.py:smoke", f"--workdir={wd}"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "eval top-1" in p.stdout
    with open(os.path.join(wd, "results.json")) as f:
        results = json.load(f)
    p, _ = _run(["eval.py", f"--workdir={wd}", "--split=test[:50]", "--image_size=36"])
    assert p.returncode == 0, p.stderr[-3000:]
    with open(os.path.join(wd, f"eval_test[:50]_36_step{results['step']}.json")) as f:
        out = json.load(f)
    assert out["eval/examples"] == 50 and out["image_size"] == 36
    assert out["step"] == results["step"]
    # eval.py on a workdir without checkpoints is a clear error, not a traceback.
    p, _ = _run(["eval.py", f"--workdir={tmp_path}", "--config=configs/default.py"])
    assert p.returncode == 2 and "No checkpoint" in p.stderr and "Traceback" not in p.stderr
