"""eval.py as two jax.distributed processes (4 fake CPU devices each) gives the numbers one
process with 8 devices gives, plain and with test-time views, an ensemble, a confusion
matrix and two of the run's evaluator entries (`--evals`: both through the evaluator
registry); only process 0 writes the JSON and the PNG."""

import json
import os

import numpy as np
import pytest

from cnnx.evaluate.entries import evaluator
from cnnx.train.loop import train_and_evaluate
from tests.jax_cache import compilation_cache, env  # noqa: F401
from tests.multiprocess import start, wait
from tests.train.tiny import tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("compilation_cache")]

CASES = {
    "plain": lambda runs: [],
    "views_ensemble_confusion_evals": lambda runs: [
        "--views=tencrop(flip=False)",
        f"--ensemble={runs[1]}",
        "--evals=eval,small",
    ],
}


# The first run keeps its larger parameters split over all 8 devices (FSDP), so under two
# processes its weights are restored split across them; the second run is plain data-parallel.
MESHES = ({"mesh.data": 1, "mesh.fsdp": 8, "mesh.fsdp_min_size": 64}, {})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny LeNet-5 runs on digits (different seeds and meshes), 4 steps each; the first
    has a second evaluator, 'small' (40 test images, after the last step)."""
    workdirs = []
    for seed, mesh in enumerate(MESHES):
        config = tiny_config(**{"train.num_steps": 4, "train.log_every_steps": 4, **mesh})
        config.seed = seed
        if seed == 0:
            config.evals.small = evaluator(data={"split": "test[:40]"}, every_steps=0)
        workdir = str(tmp_path_factory.mktemp(f"run{seed}"))
        train_and_evaluate(config, workdir)
        workdirs.append(workdir)
    return workdirs


def _eval_py(runs, case, out_dir):
    return [
        "eval.py",
        f"--workdir={runs[0]}",
        f"--output={out_dir}/eval.json",
        f"--confusion_png={out_dir}/cm.png",
        *CASES[case](runs),
    ]


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_match_one(runs, case, tmp_path, compilation_cache):  # noqa: F811
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    cache = env(compilation_cache)
    procs = start(_eval_py(runs, case, one), num_processes=1, devices=8, env=cache)
    procs += start(_eval_py(runs, case, two), num_processes=2, devices=4, env=cache)
    outputs = wait(procs)
    for out in outputs[1:]:  # the first run's weights were restored split over both processes
        assert "{'data': 1, 'fsdp': 8, 'model': 1}: 3 of 14 parameter tensors sharded" in out
    single, multi = (json.loads((d / "eval.json").read_text()) for d in (one, two))
    for d, results in ((one, single), (two, multi)):  # the arrays are in the .npz beside it
        assert results["arrays_file"] == "eval.npz"
        with np.load(d / "eval.npz") as arrays:
            results["confusion"] = arrays["eval/confusion"].tolist()
            results["per_class_top1"] = arrays["eval/per_class_top1"].tolist()
    assert multi["eval/examples"] == single["eval/examples"] == 100  # test[:100], once each
    views, members = (5, 2) if case != "plain" else (1, 1)
    assert multi["views"] == single["views"] == views
    assert len(multi["members"]) == len(single["members"]) == members
    for key in ("eval/top1", "eval/top5", "confusion", "per_class_top1", "step"):
        assert multi[key] == single[key], key
    np.testing.assert_allclose(multi["eval/loss"], single["eval/loss"], rtol=1e-5)
    assert np.sum(multi["confusion"]) == 100
    if "evals" in case:  # the second evaluator, by name, on 40 images
        assert multi["evals"] == single["evals"] == ["eval", "small"]
        assert multi["small/examples"] == single["small/examples"] == 40
        assert multi["small/top1"] == single["small/top1"]
        np.testing.assert_allclose(multi["small/loss"], single["small/loss"], rtol=1e-5)
        np.testing.assert_allclose(multi["small/ece"], single["small/ece"], rtol=1e-4, atol=1e-6)
        with np.load(one / "eval.npz") as a, np.load(two / "eval.npz") as b:
            assert a["small/confusion"].sum() == 40
            np.testing.assert_array_equal(a["small/confusion"], b["small/confusion"])
    assert np.trace(multi["confusion"]) == round(multi["eval/top1"])  # 100 examples: % = count
    # Only process 0 writes the JSON and the PNG and prints the result line.
    assert os.path.getsize(two / "cm.png") > 1000
    assert "-> " in outputs[1] and "-> " not in outputs[2]
