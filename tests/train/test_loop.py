"""The training loop end to end: sharding equivalence, checkpoints, resume, divergence."""

import functools
import json
import logging
import os
import re
import signal

import jax
import numpy as np
import pytest

from cnnx.checkpoint_eval import restore_state
from cnnx.errors import ConfigError, TrainingDiverged
from cnnx.parallel.mesh import batch_sharding, replicated
from cnnx.train import optim, steps
from cnnx.train.build import init_state, make_train_input
from cnnx.train.checkpoint import load_variables
from cnnx.train.experiment import setup
from cnnx.train.loop import train_and_evaluate
from cnnx.train.metrics_log import format_duration, train_line
from tests.train.tiny import tiny_config


def _losses(workdir):
    with open(os.path.join(workdir, "train_metrics.jsonl")) as f:
        return [json.loads(line)["train/loss"] for line in f]


def _run_steps(config, n):
    """Runs n train steps with the loop's own pieces; returns (losses, final state)."""
    exp = setup(config)
    train_input = make_train_input(exp)
    schedule = optim.make_schedule(config.schedule, 0.1, train_input.steps_per_epoch, 100)
    tx = optim.make_optimizer(config.optim, schedule)
    state, shardings = init_state(exp, tx, jax.random.PRNGKey(0))
    fn = jax.jit(
        functools.partial(
            steps.train_step,
            num_classes=10,
            schedule=schedule,
            options=steps.StepOptions.default(),
        ),
        in_shardings=(shardings, batch_sharding(exp.mesh), replicated(exp.mesh)),
        out_shardings=(shardings, replicated(exp.mesh)),
        donate_argnums=(0,),
    )
    batches = train_input.iterate(0)
    first = next(batches)
    losses = []
    for _ in range(n):
        batch = {k: jax.device_put(v, batch_sharding(exp.mesh)) for k, v in first.items()}
        state, m = fn(state, batch, jax.random.PRNGKey(1))
        losses.append(float(m["loss"]))
    return losses, state, fn


def test_loss_falls_on_a_fixed_batch_and_no_recompilation():
    losses, _, fn = _run_steps(tiny_config(), 8)
    assert losses[-1] < 0.5 * losses[0], losses
    assert fn._cache_size() == 1  # one compilation for all steps


def test_one_and_eight_devices_agree():
    one, state1, _ = _run_steps(tiny_config(**{"mesh.data": 1}), 4)
    eight, state8, _ = _run_steps(tiny_config(**{"mesh.data": 8}), 4)
    assert len(jax.devices()) == 8
    np.testing.assert_allclose(one, eight, rtol=1e-4)
    for a, b in zip(jax.tree.leaves(state1.params), jax.tree.leaves(state8.params)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_train_and_evaluate_writes_results(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        results = train_and_evaluate(tiny_config(), str(tmp_path))
    assert results["status"] == "completed" and results["step"] == 12
    # One log line per log step (every step here), one per evaluation, no library echoes.
    messages = [r.getMessage() for r in caplog.records]
    train_lines = [m for m in messages if re.match(r"step \d+/12 ", m)]
    assert [int(m.split()[1].split("/")[0]) for m in train_lines] == list(range(1, 13))
    assert re.search(r"loss [\d.e+-]+  top1 .*\| [\d.]+ steps/s .*ETA (\d+s|\?)$", train_lines[-1])
    assert "ETA ?" in train_lines[0]  # the first step compiled: no pace yet
    # clu's metric and progress writers (3 lines per log step before) log nothing.
    assert not [r for r in caplog.records if r.filename in ("logging_writer.py", "local.py")]
    # The parameter table goes to a file; the log gets one summary line pointing at it.
    table = (tmp_path / "model_summary.txt").read_text()
    assert "c5/kernel" in table and "(5, 5, 16, 120)" in table
    assert not [m for m in messages if "c5/kernel" in m]
    assert any(
        m.startswith("model lenet5: 60,850 parameters") and "model_summary.txt" in m
        for m in messages
    )
    on_disk = json.loads((tmp_path / "results.json").read_text())
    for key in ("step", "eval/top1", "eval/top5", "eval/loss", "wall_time_s"):
        assert key in on_disk
    assert on_disk["eval/examples"] == 100  # test[:100]: every example exactly once
    assert len(_losses(tmp_path)) == 12
    assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()) == [
        4,
        8,
        12,
    ]
    # The host-side loader used by analysis scripts sees the same final weights.
    variables = load_variables(str(tmp_path))
    _, state = restore_state(tiny_config(), str(tmp_path))
    for a, b in zip(jax.tree.leaves(variables["params"]), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(a, np.asarray(b))


@pytest.mark.parametrize(
    "seconds, shown",
    [
        (0.2, "0s"),
        (45.4, "45s"),
        (59.6, "1m00s"),
        (185, "3m05s"),
        (7620, "2h07m"),
        (100_800, "1d04h"),
        (-3, "0s"),
        (float("nan"), "?"),
        (float("inf"), "?"),
    ],
)
def test_eta_shows_seconds_under_a_minute(seconds, shown):
    assert format_duration(seconds) == shown


def test_train_line_is_one_line_with_rate_and_eta():
    summary = {"train/lr": 0.1, "train/loss": 0.5, "train/step_ms": 20.0}
    summary |= {"train/data_wait_ms": 5.0, "train/compute_ms": 15.0}
    line = train_line(30, 120, summary, 4.4)
    assert "\n" not in line
    assert line == (
        "step 30/120 (25.0%)  loss 0.5  lr 0.1  | 50.0 steps/s (20.0 ms/step, 5.0 of them "
        "waiting for data), ETA 4s"
    )


def test_sigterm_then_resume_equals_uninterrupted(tmp_path):
    config = tiny_config(**{"ckpt.every_steps": 5})
    straight = str(tmp_path / "straight")
    train_and_evaluate(config, straight)

    interrupted = str(tmp_path / "interrupted")

    def send_sigterm(step):
        if step == 7:
            os.kill(os.getpid(), signal.SIGTERM)

    first = train_and_evaluate(config, interrupted, step_callback=send_sigterm)
    assert first["status"] == "preempted" and first["step"] == 7
    second = train_and_evaluate(config, interrupted)
    assert second["status"] == "completed" and second["step"] == 12
    # Losses after the resume are those of the uninterrupted run, and so are the weights.
    assert _losses(interrupted) == _losses(straight)
    _, s1 = restore_state(config, straight)
    _, s2 = restore_state(config, interrupted)
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path):
    config = tiny_config(**{"ckpt.every_steps": 2, "train.num_steps": 40})
    train_and_evaluate(tiny_config(**{"train.num_steps": 4, "ckpt.every_steps": 2}), str(tmp_path))
    # Same workdir, now with an absurd learning rate (a deliberate change of the run, recorded
    # in config_history.jsonl): resumes at 4, then blows up.
    config.optim.base_lr = 1e30
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train_and_evaluate(config, str(tmp_path), allow_config_change=True)
    (change,) = map(json.loads, (tmp_path / "config_history.jsonl").read_text().splitlines())
    assert change["step"] == 4 and change["changes"]["optim.base_lr"]["new"] == 1e30
    _, state = restore_state(config, str(tmp_path))
    leaves = jax.tree.leaves(state.params)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)
    assert int(state.step) >= 4


def test_batch_that_does_not_divide_fails_before_compiling():
    with pytest.raises(ConfigError, match="multiple of 8"):
        setup(tiny_config(**{"train.batch_size": 12}))


def test_ema_is_evaluated_beside_raw_model(tmp_path):
    results = train_and_evaluate(tiny_config(**{"train.ema_decay": 0.5}), str(tmp_path))
    assert "eval_ema/top1" in results and "eval/top1" in results
