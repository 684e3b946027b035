"""Resuming an interrupted suite: finished runs are kept (not trained again), missing ones are
trained; a diverged run is recorded and not tried again (cnnx/findings/runs.py)."""

import os

import pytest

from cnnx.findings import runs as runs_lib
from cnnx.findings import suite
from cnnx.findings.registry import Scale
from cnnx.findings.runs import DIVERGED, Run, execute


def _fingerprint(path: str) -> tuple:
    stat = os.stat(path)
    return stat.st_mtime_ns, open(path, "rb").read()


def test_interrupted_suite_resumes_without_retraining(smoke_dir, tmp_path):
    root = smoke_dir  # the smoke tests' runs, when they ran first
    first = suite.run_finding("bottleneck", Scale("smoke"), root, log=lambda _: None)
    kept, lost = (r["name"] for r in first["runs"])
    results = os.path.join(root, "runs", kept, "results.json")
    before = _fingerprint(results)
    # The suite was interrupted before the second run: its workdir is not there.
    os.rename(os.path.join(root, "runs", lost), str(tmp_path / "gone"))
    lines = []
    second = suite.run_finding("bottleneck", Scale("smoke"), root, log=lines.append)
    assert f"  {kept}: already done" in lines  # the trainer found it finished
    assert any(line.startswith(f"  {lost}: trained in") for line in lines)
    assert _fingerprint(results) == before  # results.json untouched
    assert [r["status"] for r in second["runs"]] == ["completed", "completed"]
    assert second["values"][kept] == first["values"][kept]


def test_a_diverged_run_is_recorded_and_not_tried_again(tmp_path, monkeypatch):
    root = str(tmp_path)
    overrides = (
        ("optim.base_lr", 1e30),  # overflows float32 within a few steps
        ("train.num_steps", 6),
        ("train.log_every_steps", 1),
        ("data.eval_split", "test[:16]"),
    )
    run = Run("lenet_diverges", "configs/default.py:smoke", overrides, label="lr 1e30")
    rec = execute(run, root, log=lambda _: None)
    assert rec.status == "diverged" and "Lower the learning rate" in rec.message
    assert os.path.exists(os.path.join(run.workdir(root), DIVERGED))
    assert rec.train  # the steps before divergence are kept for the figure

    def must_not_train(*args, **kwargs):
        raise AssertionError("a diverged run was trained again")

    import cnnx.train.loop

    monkeypatch.setattr(cnnx.train.loop, "train_and_evaluate", must_not_train)
    lines = []
    again = execute(run, root, log=lines.append)
    assert again.status == "diverged" and lines == ["  lenet_diverges: already done (diverged)"]
    # Another config in the same workdir is not taken for the recorded one.
    other = Run("lenet_diverges", "configs/default.py:smoke", overrides[1:])
    with pytest.raises(AssertionError, match="trained again"):
        execute(other, root)
    assert runs_lib.record(other, root).status == "diverged"
