"""Optimizers, schedules, decay masks and reduce-on-plateau (incl. exact resume)."""

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnx.config_schema import base_config, validate
from cnnx.errors import ConfigError
from cnnx.train import optim
from cnnx.train.loop import train_and_evaluate
from tests.train.tiny import tiny_config

OPTIMIZERS = ["sgd", "rmsprop", "adamw", "lamb", "lars"]

PARAMS = {
    "conv": {"kernel": jnp.ones((3, 3, 2, 4)), "bias": jnp.ones((4,))},
    "bn": {"scale": jnp.ones((4,)), "bias": jnp.zeros((4,))},
    "head": {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros((3,))},
}


def _cfg(name, **kw):
    c = base_config().optim
    c.name = name
    for k, v in kw.items():
        c[k] = v
    return c


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_steps_downhill(name):
    tx = optim.make_optimizer(_cfg(name, grad_clip_norm=1.0), optax.constant_schedule(0.01))
    params = PARAMS
    state = tx.init(params)
    loss = lambda p: sum(jnp.sum(x**2) for x in jax.tree.leaves(p))  # noqa: E731
    before = loss(params)
    for _ in range(3):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    assert loss(params) < before
    assert float(optim.lr_scale(state)) == 1.0


def test_rmsprop_is_tensorflows():
    """ms starts at 1.0 (TF1), eps inside the sqrt, momentum on lr-scaled steps."""
    lr, decay, eps, mom = 0.045, 0.9, 1.0, 0.9
    cfg = _cfg("rmsprop", rms_decay=decay, eps=eps, momentum=mom, weight_decay=0.0)
    tx = optim.make_optimizer(cfg, optax.constant_schedule(lr))
    p = {"w": jnp.array([1.0, -2.0])}
    state = tx.init(p)
    ms, buf = np.ones(2), np.zeros(2)
    for g in ([0.5, 2.0], [1.0, -1.0]):
        g = np.array(g)
        updates, state = tx.update({"w": jnp.asarray(g)}, state, p)
        ms = decay * ms + (1 - decay) * g**2
        buf = mom * buf + lr * g / np.sqrt(ms + eps)
        np.testing.assert_allclose(updates["w"], -buf, rtol=1e-6)


def test_decay_mask_pattern_is_configurable():
    exclude = base_config().optim.decay_exclude  # the schema's default
    default = optim.decay_mask(PARAMS, decay_all=False, exclude=exclude)
    assert default["conv"]["kernel"] and default["head"]["kernel"]
    assert not default["conv"]["bias"] and not default["bn"]["scale"]
    no_head = optim.decay_mask(PARAMS, decay_all=False, exclude=r"(bn|head)")
    assert no_head["conv"]["kernel"] and not no_head["head"]["kernel"]
    assert all(jax.tree.leaves(optim.decay_mask(PARAMS, decay_all=True, exclude=exclude)))
    cfg = _cfg("sgd", momentum=0.0, weight_decay=0.5, decay_exclude="head")
    tx = optim.make_optimizer(cfg, optax.constant_schedule(1.0))
    zero = jax.tree.map(jnp.zeros_like, PARAMS)
    updates, _ = tx.update(zero, tx.init(PARAMS), PARAMS)
    assert float(updates["conv"]["kernel"][0, 0, 0, 0]) == -0.5
    assert float(updates["head"]["kernel"][0, 0]) == 0.0


# Cosine over the 6 steps after 2 of warmup, from 1 down to 0.5.
COSINE_AFTER_2 = [0.5 + 0.25 * (1 + np.cos(np.pi * i / 6)) for i in range(1, 6)]


def test_config_choices_are_the_builder_tables():
    """The schema's rules accept exactly the names optim.py can build, and say which."""
    for section, table in (("optim", optim.OPTIMIZERS), ("schedule", optim.SCHEDULES)):
        for name in table:
            c = base_config()
            c[section].name = name
            validate(c)
        c = base_config()
        c[section].name = "adam"
        with pytest.raises(ConfigError) as e:
            validate(c)
        assert all(repr(name) in str(e.value) for name in table)
    with pytest.raises(ConfigError, match="'lars'"):
        optim.make_optimizer(_cfg("adam"), optax.constant_schedule(1.0))
    c = base_config().schedule
    c.name = "linear"
    with pytest.raises(ConfigError, match="'plateau'"):
        optim.make_schedule(c, 1.0, steps_per_epoch=2, total_steps=8)


@pytest.mark.parametrize(
    "name,kw,expect",
    [
        ("step", dict(decay_epochs=(2, 3), decay_factor=0.1), [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01]),
        ("exponential", dict(decay_every_epochs=2, decay_factor=0.94), [1] * 4 + [0.94] * 4),
        ("plateau", {}, [1] * 8),
        ("constant", dict(warmup_epochs=1.0), [0, 0.5, 1, 1, 1, 1, 1, 1]),
        ("cosine", {}, [(1 + np.cos(np.pi * i / 8)) / 2 for i in range(8)]),
        ("cosine", dict(warmup_epochs=1.0, end_lr_factor=0.5), [0, 0.5, 1, *COSINE_AFTER_2]),
    ],
)
def test_schedules(name, kw, expect):
    assert name in optim.SCHEDULES
    c = base_config().schedule
    c.name = name
    for k, v in kw.items():
        c[k] = v
    sched = optim.make_schedule(c, 1.0, steps_per_epoch=2, total_steps=8)
    np.testing.assert_allclose([float(sched(i)) for i in range(8)], expect, rtol=1e-6, atol=1e-7)


def test_plateau_update_rule():
    c = base_config().schedule
    c.patience, c.decay_factor, c.min_delta = 2, 0.1, 0.5
    tx = optim.make_optimizer(_cfg("sgd"), optax.constant_schedule(1.0))
    state = tx.init(PARAMS)
    scales = []
    for acc in (50.0, 60.0, 60.4, 59.0, 61.0, 61.0, 61.0, 61.0):
        state = optim.plateau_update(state, acc, c)
        scales.append(float(optim.lr_scale(state)))
    # 60.4 is not > 60 + 0.5: two stalls (60.4, 59) reduce; 61 improves; two stalls reduce.
    np.testing.assert_allclose(scales, [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, PARAMS), state, PARAMS)
    np.testing.assert_allclose(updates["head"]["bias"], -0.01, rtol=1e-6)


def _lrs(workdir):
    with open(os.path.join(workdir, "train_metrics.jsonl")) as f:
        return {json.loads(line)["step"]: json.loads(line)["train/lr"] for line in f}


def test_plateau_reduction_survives_preemption_and_resume(tmp_path):
    """Evals every 2 steps never beat the first by min_delta: ÷10 at each eval from step 4.
    SIGTERM at step 4 saves before that eval; the resumed run redoes its decision."""
    config = tiny_config(
        **{
            "schedule.name": "plateau",
            "schedule.patience": 1,
            "schedule.min_delta": 1000.0,
            "eval.every_steps": 2,
            "ckpt.every_steps": 2,
            "train.num_steps": 7,
        }
    )

    def sigterm_at_4(step):
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    first = train_and_evaluate(config, str(tmp_path), step_callback=sigterm_at_4)
    assert first["status"] == "preempted" and first["step"] == 4
    second = train_and_evaluate(config, str(tmp_path))
    assert second["status"] == "completed"
    lrs = _lrs(tmp_path)
    peak = lrs[1]
    # Step s logs the rate it used: 1,2,3,4 full; 5,6 after the eval at 4; 7 after 6.
    expect = {1: 1, 2: 1, 3: 1, 4: 1, 5: 0.1, 6: 0.1, 7: 0.01}
    for step, factor in expect.items():
        np.testing.assert_allclose(lrs[step], peak * factor, rtol=1e-5, err_msg=f"step {step}")


def test_at_step_sets_every_schedule_count_and_no_other():
    """Every parameter group's schedule count follows the step; Adam's update count (its bias
    correction) keeps counting real updates."""
    from cnnx.train import finetune

    tx = optim.make_optimizer(_cfg("adamw"), optax.linear_schedule(0.0, 1.0, 10))
    tx = finetune.partition_optimizer(tx, "conv|bn", lr_mult_pattern="bn", lr_mult=0.1)
    state = tx.init(PARAMS)
    is_count = lambda x: isinstance(x, optax.ScaleByScheduleState | optax.ScaleByAdamState)  # noqa: E731
    before = [x for x in jax.tree.leaves(state, is_leaf=is_count) if is_count(x)]
    after = [x for x in jax.tree.leaves(optim.at_step(state, 7), is_leaf=is_count) if is_count(x)]
    schedules = [x for x in after if isinstance(x, optax.ScaleByScheduleState)]
    assert len(schedules) == 2  # the 'train' and the 'slow' group; 'frozen' has none
    assert all(int(x.count) == 7 and x.count.dtype == jnp.int32 for x in schedules)
    adam = [(b, a) for b, a in zip(before, after) if isinstance(a, optax.ScaleByAdamState)]
    assert len(adam) == 2 and all(int(a.count) == int(b.count) == 0 for b, a in adam)
