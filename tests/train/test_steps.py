"""Train step recipes: gradient accumulation, bf16, EMA, aux loss weight, mixing."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from cnnx import models
from cnnx.config_schema import base_config
from cnnx.train import losses, optim, steps
from cnnx.train.state import create_train_state

SCHEDULE = optax.constant_schedule(0.05)


def _state(model, size, channels, ema=False, opt="sgd"):
    cfg = base_config().optim
    cfg.name = opt
    cfg.weight_decay = 0.0  # updates are then pure gradient steps
    tx = optim.make_optimizer(cfg, SCHEDULE)
    return create_train_state(model, tx, jax.random.PRNGKey(0), (1, size, size, channels), ema=ema)


def _batch(n, size, channels, classes=10, seed=0):
    rng = np.random.RandomState(seed)
    return {
        "image": jnp.asarray(rng.randn(n, size, size, channels), jnp.float32),
        "label": jnp.asarray(rng.randint(0, classes, n), jnp.int32),
    }


def _step(num_classes=10, **kw):
    options = steps.StepOptions.default(**kw)
    return jax.jit(
        functools.partial(
            steps.train_step, num_classes=num_classes, schedule=SCHEDULE, options=options
        )
    )


def _relative_error(a, b) -> float:
    """||a - b|| / ||b|| over whole trees."""
    diff = optax.global_norm(jax.tree.map(lambda x, y: x - y, a, b))
    return float(diff / optax.global_norm(b))


def _close(a, b, **tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


@functools.cache
def _tiny_resnet(dtype="float32"):
    return models.create(
        "resnet20_cifar",
        num_classes=10,
        width_mult=0.25,
        depth_mult=0.01,  # one block per stage: fast to compile
        dtype=getattr(jnp, dtype),
    )


def test_grad_accumulation_equals_one_large_batch():
    """LeNet-5 has no BatchNorm: 4 micro-batches of 4 give the update of one batch of 16."""
    model = models.create("lenet5")
    batch = _batch(16, 32, 1)
    rng = jax.random.PRNGKey(1)
    big, m_big = _step()(_state(model, 32, 1), batch, rng)
    acc, m_acc = _step(grad_accum_steps=4)(_state(model, 32, 1), batch, rng)
    _close(big.params, acc.params, rtol=1e-4, atol=1e-6)
    _close(big.opt_state, acc.opt_state, rtol=1e-4, atol=1e-6)
    for key in ("loss", "top1", "grad_norm"):
        np.testing.assert_allclose(m_big[key], m_acc[key], rtol=1e-4)
    with pytest.raises(ValueError, match="does not divide"):
        _step(grad_accum_steps=3)(_state(model, 32, 1), batch, rng)


def test_bf16_keeps_float32_state_and_matches_float32():
    batch = _batch(8, 16, 3)
    rng = jax.random.PRNGKey(2)
    s32, m32 = _step()(_state(_tiny_resnet("float32"), 16, 3), batch, rng)
    s16, m16 = _step()(_state(_tiny_resnet("bfloat16"), 16, 3), batch, rng)
    for tree in (s16.params, s16.batch_stats, s16.opt_state):
        assert all(x.dtype in (jnp.float32, jnp.int32) for x in jax.tree.leaves(tree))
    assert jax.tree.leaves(s16.batch_stats), "the tiny ResNet has BatchNorm statistics"
    assert m16["loss"].dtype == jnp.float32 and m16["grad_norm"].dtype == jnp.float32
    np.testing.assert_allclose(m16["loss"], m32["loss"], rtol=0.05)
    init = _state(_tiny_resnet("float32"), 16, 3)
    delta = lambda s: jax.tree.map(jnp.subtract, s.params, init.params)  # noqa: E731
    assert _relative_error(delta(s16), delta(s32)) < 0.1  # bf16 gradients: ~1% noise
    assert _relative_error(s16.batch_stats, s32.batch_stats) < 0.02


@pytest.mark.parametrize("warmup", [False, True], ids=["constant", "warmup"])
def test_ema_follows_the_recursive_formula(warmup):
    model = _tiny_resnet()
    state = _state(model, 16, 3, ema=True)
    ema_p, ema_s = state.params, state.batch_stats
    step = _step(ema_decay=0.7, ema_warmup=warmup)
    for i in range(3):
        d = min(0.7, (1 + i) / (10 + i)) if warmup else 0.7
        state, _ = step(state, _batch(8, 16, 3, seed=i), jax.random.PRNGKey(0))
        ema_p = jax.tree.map(lambda e, p, d=d: d * e + (1 - d) * p, ema_p, state.params)
        ema_s = jax.tree.map(lambda e, p, d=d: d * e + (1 - d) * p, ema_s, state.batch_stats)
    _close(state.ema_params, ema_p, rtol=1e-5, atol=1e-7)
    _close(state.ema_batch_stats, ema_s, rtol=1e-5, atol=1e-7)
    assert state.eval_variables(ema=True)["params"] is state.ema_params


class _AuxNet(nn.Module):
    """Returns (logits, (aux,)) in train mode, like Inception v3."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        h = x.reshape((x.shape[0], -1))
        logits = nn.Dense(10, name="head")(h)
        aux = nn.Dense(10, name="aux")(h)
        return (logits, (aux,)) if train else logits


def test_aux_loss_weight_scales_the_auxiliary_gradient():
    batch = _batch(4, 4, 1)
    rng = jax.random.PRNGKey(0)
    moved = {}
    for w in (0.0, 0.3, 0.6):
        init = _state(_AuxNet(), 4, 1)
        new, _ = _step(aux_loss_weight=w)(init, batch, rng)
        moved[w] = new.params["aux"]["kernel"] - init.params["aux"]["kernel"]
        head = new.params["head"]["kernel"] - init.params["head"]["kernel"]
        assert float(jnp.abs(head).max()) > 0
    assert float(jnp.abs(moved[0.0]).max()) == 0.0
    np.testing.assert_allclose(moved[0.6], 2 * moved[0.3], rtol=1e-3, atol=1e-6)


def test_mixing_in_the_step_is_deterministic_and_changes_the_loss():
    model = _AuxNet()
    batch = _batch(16, 8, 1)
    rng = jax.random.PRNGKey(5)
    plain = _step()(_state(model, 8, 1), batch, rng)[1]
    mixed = _step(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)
    a = mixed(_state(model, 8, 1), batch, rng)[1]
    b = mixed(_state(model, 8, 1), batch, rng)[1]
    assert np.isfinite(a["loss"]) and float(a["loss"]) != float(plain["loss"])
    np.testing.assert_array_equal(a["loss"], b["loss"])


class _TwoLayer(nn.Module):
    """Two dense layers, no BatchNorm or dropout: an SGD step is exactly -lr × gradient."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        del train
        h = jnp.tanh(nn.Dense(8, name="body")(x.reshape((x.shape[0], -1))))
        return nn.Dense(10, name="head")(h)


# Warmup from 0 to 1 over 10 steps: the rate names the step it was computed for (0.1 × step).
WARMUP = optax.linear_schedule(0.0, 1.0, 10)

# (name, finetune.partition_optimizer arguments, plateau multiplier, grad_accum_steps); the
# multiplier each group applies on top of the logged rate.
APPLIED_LR_CASES = [
    ("plain", {}, 1.0, 1, {"body": 1.0, "head": 1.0}),
    ("grad_accum", {}, 1.0, 2, {"body": 1.0, "head": 1.0}),
    ("plateau", {}, 0.5, 1, {"body": 1.0, "head": 1.0}),
    ("lr_mult", {"lr_mult_pattern": "body", "lr_mult": 0.1}, 1.0, 1, {"body": 0.1, "head": 1.0}),
    ("frozen", {"trainable": "head"}, 1.0, 1, {"body": 0.0, "head": 1.0}),
]


@pytest.mark.parametrize(
    "partition, plateau_scale, accum, group_mult",
    [case[1:] for case in APPLIED_LR_CASES],
    ids=[case[0] for case in APPLIED_LR_CASES],
)
def test_logged_lr_is_the_applied_lr_after_a_skipped_step(
    partition, plateau_scale, accum, group_mult
):
    """Issue 16 item 8: a skipped (NaN) step must not leave the schedule one step behind.

    SGD without momentum or decay moves each parameter by -lr × gradient, so the applied rate
    is measured from the update itself and compared with the logged one and schedule(step).
    """
    from cnnx.train import finetune

    cfg = base_config().optim
    cfg.momentum, cfg.weight_decay = 0.0, 0.0
    tx = optim.make_optimizer(cfg, WARMUP)
    tx = finetune.partition_optimizer(tx, **{"trainable": None, **partition})
    model = _TwoLayer()
    state = create_train_state(model, tx, jax.random.PRNGKey(0), (1, 4, 4, 1), ema=True)
    if plateau_scale != 1.0:
        plateau = base_config().schedule
        plateau.patience, plateau.decay_factor = 1, plateau_scale
        opt_state = optim.plateau_update(state.opt_state, 50.0, plateau)  # sets the best
        state = state.replace(opt_state=optim.plateau_update(opt_state, 10.0, plateau))
    step = jax.jit(
        functools.partial(
            steps.train_step,
            num_classes=10,
            schedule=WARMUP,
            options=steps.StepOptions.default(
                skip_nonfinite=True, grad_accum_steps=accum, ema_decay=0.99, ema_warmup=True
            ),
        )
    )

    def grads(params, batch):
        def loss(p):
            logits = model.apply({"params": p}, batch["image"], train=True)
            return jnp.mean(losses.cross_entropy(logits, batch["label"], 10))

        return jax.grad(loss)(params)

    rng = jax.random.PRNGKey(0)
    nan_batch = _batch(8, 4, 1, seed=1)
    nan_batch["image"] = nan_batch["image"].at[0, 0, 0, 0].set(jnp.nan)
    state, _ = step(state, _batch(8, 4, 1, seed=0), rng)
    state, metrics = step(state, nan_batch, rng)
    assert float(metrics["skipped"]) == 1.0
    for i in (2, 3, 4):
        batch = _batch(8, 4, 1, seed=i)
        before = state
        state, metrics = step(state, batch, rng)
        assert float(metrics["skipped"]) == 0.0 and int(state.step) == i + 1
        expected = 0.1 * i * plateau_scale
        np.testing.assert_allclose(float(metrics["lr"]), expected, rtol=1e-5)
        g = grads(before.params, batch)
        for layer, mult in group_mult.items():
            for name in ("kernel", "bias"):
                delta = state.params[layer][name] - before.params[layer][name]
                np.testing.assert_allclose(
                    delta, -mult * float(metrics["lr"]) * g[layer][name], rtol=1e-4, atol=1e-7
                )
        # EMA warmup follows the same counter: decay (1 + t) / (10 + t) at step t = i.
        d = (1 + i) / (10 + i)
        ema = jax.tree.map(lambda e, p, d=d: d * e + (1 - d) * p, before.ema_params, state.params)
        _close(state.ema_params, ema, rtol=1e-5, atol=1e-7)


def test_schedule_follows_the_step_of_a_restored_state():
    """A checkpoint whose optimizer count lags its step (written by a run that skipped steps
    before the fix) applies schedule(step) once restored."""
    cfg = base_config().optim
    cfg.momentum, cfg.weight_decay = 0.0, 0.0
    model = _TwoLayer()
    state = create_train_state(
        model, optim.make_optimizer(cfg, WARMUP), jax.random.PRNGKey(0), (1, 4, 4, 1)
    )
    state = state.replace(step=jnp.asarray(5, jnp.int32))  # its optax count is still 0
    options = steps.StepOptions.default()
    step = jax.jit(
        functools.partial(steps.train_step, num_classes=10, schedule=WARMUP, options=options)
    )
    batch = _batch(8, 4, 1)
    new, metrics = step(state, batch, jax.random.PRNGKey(0))

    def loss(p):
        logits = model.apply({"params": p}, batch["image"], train=True)
        return jnp.mean(losses.cross_entropy(logits, batch["label"], 10))

    g = jax.grad(loss)(state.params)
    np.testing.assert_allclose(float(metrics["lr"]), 0.5, rtol=1e-6)
    _close(
        jax.tree.map(lambda a, b: a - b, new.params, state.params),
        jax.tree.map(lambda x: -0.5 * x, g),
        rtol=1e-4,
        atol=1e-7,
    )


# --- Step options: defaults only in the config schema ------------------------------------


def test_step_options_take_missing_keys_from_the_schema(monkeypatch):
    schema = base_config().train
    assert steps.StepOptions.from_config(ml_collections.ConfigDict()) == (
        steps.StepOptions.from_config(schema)
    )
    assert steps.StepOptions.default().label_smoothing == schema.label_smoothing

    # A changed schema default is what a config without the key gets; a config's value wins.
    def changed_schema():
        c = base_config()
        c.train.label_smoothing = 0.25
        c.train.on_nonfinite = "skip"
        return c

    monkeypatch.setattr(steps, "base_config", changed_schema)
    options = steps.StepOptions.from_config(ml_collections.ConfigDict())
    assert options.label_smoothing == 0.25 and options.skip_nonfinite
    options = steps.StepOptions.from_config(ml_collections.ConfigDict({"label_smoothing": 0.1}))
    assert options.label_smoothing == 0.1


def test_step_options_of_a_config():
    config = base_config()
    config.train.mixup_alpha, config.train.grad_accum_steps = 0.2, 4
    config.train.on_nonfinite = "skip"
    options = steps.StepOptions.from_config(config.train)
    assert options.mixup_alpha == 0.2 and options.grad_accum_steps == 4
    assert options.skip_nonfinite
    assert not steps.StepOptions.from_config(base_config().train).skip_nonfinite
