"""scripts/fixres.py and scripts/sweep.py as two jax.distributed processes (4 fake CPU devices
each) give the table and the records one process with 8 devices gives; only process 0 writes
them."""

import json
import os
import re

import numpy as np
import pytest

from tests.jax_cache import compilation_cache, env  # noqa: F401
from tests.multiprocess import start, wait

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("compilation_cache")]

# FixRes's smoke form: LeNet-5 trained 4 steps at 32 px, tested at 32 and 40 px, its two
# dense layers fine-tuned 2 steps at each.
FIXRES = [
    "scripts/fixres.py",
    "--config=configs/sweeps/fixres.py:digits,model=lenet5",
    "--config.train_resolutions=(32,)",
    "--config.test_resolutions=(32,40)",
    "--config.train.train.num_steps=4",
    "--config.train.train.batch_size=32",
    "--config.train.data.train_pp=random_crop(padding=2)|normalize",
    "--config.train.data.eval_split=test[:100]",
    "--config.train.eval.batch_size=40",
    "--config.train.ckpt.asynchronous=False",
    "--config.finetune.steps=2",
    "--config.finetune.batch_size=32",
    "--config.finetune.trainable=^(f6|output)/",
]
# The sweep's smoke form: a one-trial grid of the driver tests' LeNet-5 sweep; process 0 takes
# the trial from the study and shares it with process 1 through jax.distributed's key-value store.
SWEEP = ["scripts/sweep.py", "--sweep=tests/sweeps/sweep_fixture.py:steps=4,data=-1,n=1"]
COMPARED = ("eval/top1", "eval/top5", "eval/loss", "train/loss", "step")


def _run(args, tmp_path, compilation_cache):  # noqa: F811
    """`args` with --workdir=<tmp>/one (1 process, 8 devices) and <tmp>/two (2 processes, 4
    devices each); returns the two workdir names and every process's output."""
    one, two = "one", "two"
    cache = env(compilation_cache)
    procs = start([*args, f"--workdir={tmp_path / one}"], num_processes=1, devices=8, env=cache)
    procs += start([*args, f"--workdir={tmp_path / two}"], num_processes=2, devices=4, env=cache)
    return one, two, wait(procs)


def test_fixres_two_processes_match_one(tmp_path, compilation_cache):  # noqa: F811
    one, two, outputs = _run(FIXRES, tmp_path, compilation_cache)
    single, multi = (json.loads((tmp_path / d / "fixres.json").read_text()) for d in (one, two))
    assert [r["test_res"] for r in multi["rows"]] == [32, 40]
    assert multi["before"] == single["before"] and multi["after"] == single["after"]
    for a, b in zip(single["rows"], multi["rows"]):
        assert a["trainable_params"] == b["trainable_params"] > 0
        # Each test size is an evaluator entry of its own (the registry's path).
        assert a["evaluator"] == b["evaluator"] == f"test_{a['test_res']}px_crop0p875"
        for phase in ("before_metrics", "after_metrics"):
            assert (
                a[phase][f"{a['evaluator']}/examples"]
                == b[phase][f"{a['evaluator']}/examples"]
                == 100
            )
            np.testing.assert_allclose(
                a[phase][f"{a['evaluator']}/loss"], b[phase][f"{a['evaluator']}/loss"], rtol=1e-5
            )
        np.testing.assert_allclose(a["finetune/loss"], b["finetune/loss"], rtol=1e-5)
    assert os.path.getsize(tmp_path / two / "fixres.png") > 1000
    assert "fixres.json, fixres.md" in outputs[1] and "fixres.json" not in outputs[2]


def test_sweep_two_processes_match_one(tmp_path, compilation_cache):  # noqa: F811
    one, two, outputs = _run(SWEEP, tmp_path, compilation_cache)
    records = []
    for d in (one, two):
        with open(tmp_path / d / "trials.jsonl") as f:
            records.append([json.loads(line) for line in f])
    (single,), (multi,) = records  # one record each: process 1 recorded nothing
    assert single["status"] == multi["status"] == "completed"
    assert single["key"] == multi["key"] and multi["macs"] == single["macs"]
    for key in COMPARED:
        np.testing.assert_allclose(multi["metrics"][key], single["metrics"][key], rtol=1e-5)
    # Process 1 ran the trial but neither printed nor wrote the summary (its table rows).
    assert os.path.exists(tmp_path / two / "summary.md")
    assert "process 1: trial width=0.5 from process 0: completed" in outputs[2]
    table_row = re.compile(r"^\| ", re.M)  # log lines have ' | ' inside, never at the start
    assert table_row.search(outputs[1]) and not table_row.search(outputs[2])
