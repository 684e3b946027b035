"""A run's speed in its log and results.json, and log windows that checkpoints do not cut."""

import json
import logging
import re

import numpy as np
import pytest

from cnnx.train import throughput
from cnnx.train.loop import train_and_evaluate
from tests.train.tiny import tiny_config


def _lines(workdir):
    return [
        json.loads(line)
        for line in (workdir / "train_metrics.jsonl").read_text().split("\n")
        if line
    ]


def test_results_and_log_carry_speed_and_checkpoints_keep_the_log_window(tmp_path, caplog):
    every_step = tmp_path / "every_step"
    train_and_evaluate(tiny_config(**{"train.log_every_steps": 1}), str(every_step))
    windowed = tmp_path / "windowed"
    config = tiny_config(**{"train.log_every_steps": 4, "ckpt.every_steps": 3})
    with caplog.at_level(logging.INFO):
        results = train_and_evaluate(config, str(windowed))

    # Checkpoints at 3, 6, 9 write no line and cut no window: each line averages 4 steps
    # (issue 33: a save used to flush, so the step-4 line averaged step 4 alone).
    per_step = {r["step"]: r["train/loss"] for r in _lines(every_step)}
    lines = _lines(windowed)
    assert [r["step"] for r in lines] == [4, 8, 12]
    for r in lines:
        mean = np.mean([per_step[s] for s in range(r["step"] - 3, r["step"] + 1)])
        assert r["train/loss"] == pytest.approx(mean, rel=1e-5)

    assert results["dtype_requested"] == "auto" and results["compute_dtype"] == "float32"
    assert results["device_kind"] == "cpu" and results["chips"] == 8
    assert results["peak_tflops_per_chip"] is None and results["mfu"] is None  # no CPU peak
    assert results["images_per_s_per_chip"] > 0 and results["tflops_per_chip"] > 0
    # LeNet-5 at 32 px: about 0.42 MFLOP per image forward, 4 images per chip, x3 for a step.
    assert 4e-3 < results["gflop_per_step_per_chip"] < 4e-2
    assert 0.0 <= results["host_share"] <= 1.0
    assert results["compile_s"] > 0 and results["peak_memory_mb"] > 0
    on_disk = json.loads((windowed / "results.json").read_text())
    assert on_disk["tflops_per_chip"] == results["tflops_per_chip"]
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step 12/12 ")]
    assert re.search(r"img/s/chip, [\d.e+-]+ TFLOP/s/chip, host share \d+%, ETA", line[0])
    assert any(
        r.getMessage().startswith("compute dtype float32 (model.dtype=auto on cpu)")
        for r in caplog.records
    )


class _Cost:
    def __init__(self, cost):
        self.cost = cost

    def cost_analysis(self):
        if isinstance(self.cost, Exception):
            raise self.cost
        return self.cost


def test_step_flops_reads_every_cost_analysis_shape():
    assert throughput.step_flops(_Cost({"flops": 3e9})) == 3e9
    assert throughput.step_flops(_Cost([{"flops": 2e9}])) == 2e9  # older JAX: a list
    assert throughput.step_flops(_Cost({"flops": -1.0})) is None
    assert throughput.step_flops(_Cost(NotImplementedError("no cost model"))) is None


def test_device_idle_counts_the_gaps_between_a_step_and_the_next_handover():
    import time

    import jax.numpy as jnp

    idle = throughput.DeviceIdle()
    done = jnp.zeros(())  # already computed: "finishes" when the watcher looks
    idle.dispatched(done, time.perf_counter(), 0.0)
    idle.take()
    # Handed over 0.3 s after the previous step finished, 0.1 s of which an evaluation.
    idle.dispatched(done, time.perf_counter() + 0.3, 0.1)
    idle_s, span_s = idle.take()
    assert 0.15 < idle_s < 0.25 and span_s >= 0.0
    idle.close()
