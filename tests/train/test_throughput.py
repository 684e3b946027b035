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


def _slow_input_and_checkpoints(monkeypatch):
    """A source that takes 0.3 s per batch (far longer than the step) and checkpoint saves
    that wait 0.8 s before starting."""
    import time

    from cnnx.data import pipeline
    from cnnx.train.checkpoint import Checkpointer

    iterate, save = pipeline.TrainInput.iterate, Checkpointer.save

    def sleepy_iterate(self, start_step=0):
        for batch in iterate(self, start_step):
            time.sleep(0.3)
            yield batch

    def slow_save(self, *args, **kwargs):
        time.sleep(0.8)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(pipeline.TrainInput, "iterate", sleepy_iterate)
    monkeypatch.setattr(Checkpointer, "save", slow_save)


def _check_host_share_causes(workdir, results, checkpoints):
    """Each line's host share is mostly input, or checkpoint on the step after a save; the
    parts add up to the total in every line and in results.json."""
    causes = (*throughput.CAUSES, throughput.OTHER)
    for line in _lines(workdir)[1:]:  # the first step has no step before it to wait after
        parts = {c: line[f"train/host_share/{c}"] for c in causes}
        assert sum(parts.values()) == pytest.approx(line["train/host_share"], abs=1e-9)
        slowest = "checkpoint" if line["step"] - 1 in checkpoints else "input"
        assert max(parts, key=parts.get) == slowest, line
        assert parts[slowest] > 0.5 * line["train/host_share"] > 0.0, line
    total = sum(results[f"host_share/{c}"] for c in causes)
    assert total == pytest.approx(results["host_share"], abs=1e-9)
    # Over the run (a save itself takes seconds on a loaded host: no order between them).
    assert results["host_share/input"] > 0.05 and results["host_share/checkpoint"] > 0.05


def test_results_and_log_carry_speed_and_checkpoints_keep_the_log_window(
    tmp_path, caplog, monkeypatch
):
    every_step = tmp_path / "every_step"
    with monkeypatch.context() as patched:
        _slow_input_and_checkpoints(patched)
        slow = train_and_evaluate(tiny_config(**{"train.log_every_steps": 1}), str(every_step))
    _check_host_share_causes(every_step, slow, checkpoints=(4, 8))
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
    assert re.search(
        r"img/s/chip, [\d.e+-]+ TFLOP/s/chip, host share \d+% \(input \d+, metrics \d+, "
        r"logging \d+, checkpoint \d+, other \d+\), ETA",
        line[0],
    )
    parts = [results[f"host_share/{c}"] for c in (*throughput.CAUSES, throughput.OTHER)]
    assert sum(parts) == pytest.approx(results["host_share"], abs=1e-9)
    assert lines[-1]["train/host_share/input"] >= 0.0
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


def test_device_idle_counts_the_gaps_between_a_step_and_the_next_handover_by_cause():
    import time

    import jax.numpy as jnp

    idle = throughput.DeviceIdle()
    done = jnp.zeros(())  # already computed: "finishes" when the watcher looks
    idle.dispatched(done, time.perf_counter())
    idle.take()
    # Handed over 0.3 s after the previous step finished: 0.1 s of it an evaluation (not a
    # step's), 0.1 s waiting for input, 0.05 s writing the log, the rest the loop's own.
    t = time.perf_counter() + 0.05
    phases = [(None, t, t + 0.1), ("input", t + 0.1, t + 0.2), ("logging", t + 0.2, t + 0.25)]
    idle.dispatched(done, t + 0.25, phases)
    parts, span_s = idle.take()
    assert parts["input"] == pytest.approx(0.1) and parts["logging"] == pytest.approx(0.05)
    assert parts["metrics"] == parts["checkpoint"] == 0.0
    assert 0.0 < parts["other"] < 0.1  # from the first step's completion to t
    assert span_s >= 0.0  # (handed over in the future here: no real span)
    idle.close()


def test_nested_phases_count_as_the_outer_one_and_causes_are_checked():
    speed = throughput.Throughput(8, [_Device()], "float32")
    with speed.not_a_step(), speed.phase("logging"):  # an evaluation's log line
        pass
    with speed.phase("checkpoint"):
        pass
    assert [cause for cause, _, _ in speed._phases] == [None, "checkpoint"]
    with pytest.raises(ValueError, match="unknown host-share cause"), speed.phase("eval"):
        pass
    speed.close()


class _Device:
    device_kind = "cpu"

    def memory_stats(self):
        return None
