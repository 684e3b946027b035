"""Two evaluators at their own cadences in one digits run: each logged under its name, both
cadences exact across a preemption and resume, results.json keeping eval/*, per-class top-1 in
results.npz; eval.py runs them by name (issue 28 items 1 and 5)."""

import json
import os
import signal

import numpy as np
import pytest

from cnnx import checkpoint_eval
from cnnx.evaluate.entries import evaluator
from cnnx.train import loop
from tests.jax_cache import compilation_cache  # noqa: F401
from tests.train.tiny import tiny_config

pytestmark = [pytest.mark.usefixtures("compilation_cache"), pytest.mark.slow]


def _config():
    config = tiny_config(**{"eval.every_steps": 6})  # 'eval': steps 6 and 12 (final)
    config.evals.small = evaluator(
        data={"split": "test[:40]"}, every_steps=4, options={"per_class": True}
    )  # 'small': steps 4, 8 and 12
    return config


def _logged(workdir) -> dict:
    """{tag: [steps]} of the evaluation scalars in the workdir's TensorBoard event files."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    acc = EventAccumulator(str(workdir))
    acc.Reload()
    return {
        tag: [e.step for e in acc.Tensors(tag)]
        for tag in acc.Tags()["tensors"]
        if tag.split("/")[0] in ("eval", "small")
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, compilation_cache):  # noqa: F811
    """The run, preempted after step 5 (between the evaluations of steps 4 and 6), resumed."""
    workdir = tmp_path_factory.mktemp("evals")

    def sigterm_at_5(step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    first = loop.train_and_evaluate(_config(), str(workdir), step_callback=sigterm_at_5)
    assert first["status"] == "preempted" and first["step"] == 5
    assert first["small/examples"] == 40 and "eval/top1" not in first  # 'small' ran at 4
    second = loop.train_and_evaluate(_config(), str(workdir))
    assert second["status"] == "completed" and second["step"] == 12
    return workdir


def test_each_evaluator_at_its_cadence_across_a_resume(run_dir):
    logged = _logged(run_dir)
    with open(run_dir / "eval_metrics.jsonl") as f:
        lines = [json.loads(line) for line in f]
    for metric in ("top1", "loss", "nll", "ece", "examples"):
        assert logged[f"small/{metric}"] == [4, 8, 12], metric
        assert logged[f"eval/{metric}"] == [6, 12], metric
        # The jsonl too, each evaluation once (the resumed segment rewrote none).
        assert [r["step"] for r in lines if f"small/{metric}" in r] == [4, 8, 12], metric
        assert [r["step"] for r in lines if f"eval/{metric}" in r] == [6, 12], metric
    results = json.loads((run_dir / "results.json").read_text())
    assert results["eval/examples"] == 100 and results["small/examples"] == 40
    for key in ("eval/top1", "eval/loss", "eval/ece", "small/top1", "small/nll", "small/ece"):
        assert isinstance(results[key], float), key
    with np.load(run_dir / "results.npz") as arrays:
        assert sorted(arrays) == ["small/per_class_top1"]  # asked for by 'small' only
        per_class = arrays["small/per_class_top1"]
    assert per_class.shape == (10,)
    # Per-class top-1 weighted by each class's examples is the top-1.
    from cnnx.data import get_source

    _, labels = get_source(_config().data, image_size=32).arrays("test[:40]")
    support = np.bincount(labels, minlength=10)
    assert np.isclose(np.nansum(per_class * support) / 40, results["small/top1"])


def test_eval_py_runs_the_evaluators_by_name(run_dir, tmp_path, capsys):
    out = tmp_path / "evals.json"
    code = checkpoint_eval.run(str(run_dir), output=str(out), evals=("small", "eval"))
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert "small: top-1 " in printed and "; eval: top-1 " in printed
    written = json.loads(out.read_text())
    results = json.loads((run_dir / "results.json").read_text())
    assert written["evals"] == ["small", "eval"] and written["step"] == 12
    for name in ("small", "eval"):
        assert written[f"{name}/top1"] == results[f"{name}/top1"]
        assert written[f"{name}/examples"] == results[f"{name}/examples"]
        assert np.isclose(written[f"{name}/nll"], results[f"{name}/nll"], rtol=1e-5)
        assert np.isclose(written[f"{name}/ece"], results[f"{name}/ece"], rtol=1e-4)
    assert "confusion" not in written and written["arrays_file"] == "evals.npz"
    with np.load(tmp_path / "evals.npz") as arrays:
        assert arrays["small/confusion"].sum() == 40 and arrays["eval/confusion"].sum() == 100
        assert np.trace(arrays["small/confusion"]) == round(0.4 * results["small/top1"])

    code = checkpoint_eval.run(str(run_dir), output=str(out), evals=("v2",))
    _, err = capsys.readouterr()
    assert (
        code == 2
        and "error: --evals=v2: no evaluator 'v2' in this config; it has eval, small" in err
    )


def test_eval_py_runs_an_evaluator_the_run_did_not_declare(run_dir, tmp_path):
    """eval.py --evaluators=FILE (big_vision's eval_only): entries of a config file, with
    overrides, run on the checkpoint beside the config's own, named by --evals."""
    import subprocess
    import sys

    out = tmp_path / "later.json"
    args = [
        "eval.py",
        f"--workdir={run_dir}",
        "--evaluators=tests/evaluate/extra_evaluators.py",
        "--evaluators.later.data.split=test[:20]",
        "--evals=later,small",
        f"--output={out}",
    ]
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = subprocess.run(
        [sys.executable, *args], cwd=repo, capture_output=True, text=True, timeout=600
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "later: top-1 " in p.stdout and "; small: top-1 " in p.stdout
    written = json.loads(out.read_text())
    results = json.loads((run_dir / "results.json").read_text())
    assert written["evals"] == ["later", "small"] and written["later/examples"] == 20
    assert written["small/top1"] == results["small/top1"]
    with np.load(tmp_path / "later.npz") as arrays:
        assert arrays["later/per_class_top1"].shape == (10,)
        assert arrays["later/confusion"].sum() == 20
    # Without --evals, the file's entries; the default name tells the evaluations apart.
    from cnnx.evaluate.entries import evaluator

    extra = {"later": evaluator(data={"split": "test[:30]"})}
    got = checkpoint_eval.evaluate_checkpoint(
        checkpoint_eval.wd.load_config(str(run_dir)), str(run_dir), evaluators=extra
    )
    assert got["evals"] == ["later"] and got["later/examples"] == 30
    name = checkpoint_eval.output_name(got, explicit={"evaluators": extra})
    assert name.startswith("eval_test[:30]_32_step12_evaluators-") and name.endswith(".json")
