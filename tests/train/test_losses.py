"""Losses by name (`train.loss`): each against a hand-computed value, BCE against timm's, the
default step unchanged, and the context a loss such as distillation reads."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnx.config_schema import base_config
from cnnx.data import mixing
from cnnx.errors import ConfigError
from cnnx.train import losses, optim, steps
from cnnx.train.state import create_train_state

SCHEDULE = optax.constant_schedule(0.05)


def test_softmax_xent_by_hand():
    logits = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], jnp.bfloat16)
    targets = jnp.array([[0.1, 0.2, 0.7], [0.0, 1.0, 0.0]])
    lse = math.log(math.e + math.e**2 + math.e**3)
    expected = [0.1 * (lse - 1) + 0.2 * (lse - 2) + 0.7 * (lse - 3), math.log(3.0)]
    got = losses.LOSSES["softmax_xent"](logits, targets, {"labels": jnp.array([2, 1])})
    assert got.dtype == jnp.float32 and got.shape == (2,)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_sigmoid_xent_by_hand():
    logits = jnp.array([[0.0, 2.0, -1.0]])
    targets = jnp.array([[0.5, 1.0, 0.0]])
    # -[t log σ(z) + (1 - t) log(1 - σ(z))] per class: ln 2, ln(1 + e^-2), ln(1 + e^-1).
    expected = (math.log(2.0) + math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 3
    got = losses.LOSSES["sigmoid_xent"](logits, targets, {})
    assert got.dtype == jnp.float32 and got.shape == (1,)
    np.testing.assert_allclose(got, [expected], rtol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_sigmoid_xent_is_timms_binary_cross_entropy(smoothing):
    """timm's BinaryCrossEntropy smooths integer labels itself (on 1 - ε + ε/K, off ε/K) and
    takes mixed (dense) targets as they come: both equal the sigmoid loss on cnnx's targets."""
    torch = pytest.importorskip("torch")
    bce = pytest.importorskip("timm.loss").BinaryCrossEntropy(smoothing=smoothing)
    rng = np.random.RandomState(0)
    logits = rng.randn(8, 10).astype(np.float32) * 3
    labels = rng.randint(0, 10, 8)
    smoothed = optax.smooth_labels(jax.nn.one_hot(labels, 10), smoothing)
    ours = jnp.mean(losses.sigmoid_cross_entropy(logits, smoothed))
    theirs = bce(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    np.testing.assert_allclose(float(ours), theirs, rtol=1e-5)
    _, mixed, _ = mixing.mix_batch(
        jax.random.PRNGKey(1),
        jnp.zeros((8, 4, 4, 1)),
        jnp.asarray(labels),
        10,
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        label_smoothing=smoothing,
    )
    ours = jnp.mean(losses.sigmoid_cross_entropy(logits, mixed))
    theirs = bce(torch.from_numpy(logits), torch.from_numpy(np.array(mixed))).item()
    np.testing.assert_allclose(float(ours), theirs, rtol=1e-5)


class _AuxNet(nn.Module):
    """Dense logits and one auxiliary head in train mode (like Inception v3), no BatchNorm."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        h = jnp.tanh(nn.Dense(16, name="body")(x.reshape((x.shape[0], -1))))
        logits = nn.Dense(10, name="head")(h)
        aux = nn.Dense(10, name="aux")(h)
        return (logits, (aux,)) if train else logits


def _state():
    cfg = base_config().optim
    cfg.weight_decay = 0.0  # a head without gradient stays where it is
    tx = optim.make_optimizer(cfg, SCHEDULE)
    return create_train_state(_AuxNet(), tx, jax.random.PRNGKey(0), (1, 4, 4, 1), ema=True)


def _batch(n=16, seed=0):
    rng = np.random.RandomState(seed)
    return {
        "image": jnp.asarray(rng.randn(n, 4, 4, 1), jnp.float32),
        "label": jnp.asarray(rng.randint(0, 10, n), jnp.int32),
    }


def _run(**options):
    step = jax.jit(
        functools.partial(
            steps.train_step,
            num_classes=10,
            schedule=SCHEDULE,
            options=steps.StepOptions.default(**options),
        )
    )
    state = _state()
    for i in range(2):
        state, metrics = step(state, _batch(seed=i), jax.random.PRNGKey(3))
    return state, metrics


def _same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _todays_loss(logits, targets, context):
    """The train step's loss before losses had names (steps.py at main 7c52fc4)."""
    del context
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets.astype(jnp.float32))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"label_smoothing": 0.1, "mixup_alpha": 0.8, "cutmix_alpha": 1.0},
        {"grad_accum_steps": 4},
    ],
    ids=["plain", "smoothing_mixing", "grad_accum"],
)
def test_the_default_loss_is_todays_bit_for_bit(monkeypatch, options):
    assert base_config().train.loss == "softmax_xent"
    monkeypatch.setitem(losses.LOSSES, "today", _todays_loss)
    options = {"aux_loss_weight": 0.3, "ema_decay": 0.9, **options}
    state, metrics = _run(**options)
    state_today, metrics_today = _run(loss="today", **options)
    _same((state, metrics), (state_today, metrics_today))


def test_sigmoid_xent_trains_with_its_own_loss():
    """The logged loss is the mean BCE of the main head on the step's (smoothed) targets; the
    auxiliary head's BCE, weighted, reaches the gradient."""
    options = dict(loss="sigmoid_xent", label_smoothing=0.1, aux_loss_weight=0.0)
    step = functools.partial(
        steps.train_step,
        num_classes=10,
        schedule=SCHEDULE,
        options=steps.StepOptions.default(**options),
    )
    state, batch = _state(), _batch()
    _, metrics = jax.jit(step)(state, batch, jax.random.PRNGKey(0))
    logits, _ = state.apply_fn({"params": state.params}, batch["image"], train=True)
    targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], 10), 0.1)
    expected = jnp.mean(losses.sigmoid_cross_entropy(logits, targets))
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-6)
    softmax = jax.jit(functools.partial(step, options=steps.StepOptions.default()))
    assert float(softmax(_state(), batch, jax.random.PRNGKey(0))[1]["loss"]) != float(expected)
    moved = {}
    for w in (0.0, 0.5):
        o = steps.StepOptions.default(**{**options, "aux_loss_weight": w})
        new, _ = jax.jit(functools.partial(step, options=o))(_state(), batch, jax.random.PRNGKey(0))
        moved[w] = float(jnp.abs(new.params["aux"]["kernel"] - state.params["aux"]["kernel"]).max())
    assert moved[0.0] == 0.0 and moved[0.5] > 0.0


def _label_loss(logits, targets, context):
    """A loss that reads the context (as distillation reads a teacher's logits): cross
    entropy against the unmixed labels, whatever the targets."""
    del targets
    return losses.cross_entropy(logits, context["labels"], logits.shape[-1])


def test_the_context_reaches_the_loss_also_per_micro_batch(monkeypatch):
    monkeypatch.setitem(losses.LOSSES, "labels_only", _label_loss)
    mixed = {"label_smoothing": 0.3, "mixup_alpha": 0.8}  # targets the loss must not see
    whole, m_whole = _run(loss="labels_only", aux_loss_weight=0.0, **mixed)
    micro, m_micro = _run(loss="labels_only", aux_loss_weight=0.0, grad_accum_steps=4, **mixed)
    plain, _ = _run(loss="labels_only", aux_loss_weight=0.0, mixup_alpha=0.8)
    # No BatchNorm: 4 micro-batches give the update of the whole batch.
    for x, y in zip(jax.tree.leaves(whole.params), jax.tree.leaves(micro.params)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m_whole["loss"], m_micro["loss"], rtol=1e-5)
    # Label smoothing changes the targets only, which this loss ignores.
    _same(whole.params, plain.params)


def test_unknown_loss_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"train.loss='focal': use one of 'softmax_xent'"):
        steps.StepOptions.default(loss="focal")


@pytest.mark.torch
def test_bce_target_threshold_is_timms():
    """timm's BinaryCrossEntropy(target_threshold=0.2) on mixed, smoothed targets (RSB's)."""
    torch = pytest.importorskip("torch")
    bce = pytest.importorskip("timm.loss").BinaryCrossEntropy(smoothing=0.1, target_threshold=0.2)
    rng = np.random.RandomState(0)
    logits = rng.randn(8, 10).astype(np.float32) * 3
    labels = jnp.asarray(rng.randint(0, 10, 8))
    images = jnp.zeros((8, 4, 4, 1))
    _, mixed, _ = mixing.mix_batch(
        jax.random.PRNGKey(3), images, labels, 10, mixup_alpha=1.0, label_smoothing=0.1
    )
    hard = losses.threshold_targets(mixed, 0.2)
    assert set(np.unique(hard)) <= {0.0, 1.0} and np.all(hard.sum(1) >= 1)
    ours = jnp.mean(losses.sigmoid_cross_entropy(logits, hard))
    theirs = bce(torch.from_numpy(logits), torch.from_numpy(np.array(mixed))).item()
    np.testing.assert_allclose(float(ours), theirs, rtol=1e-5)


def test_the_step_thresholds_the_targets():
    options = dict(loss="sigmoid_xent", label_smoothing=0.1, aux_loss_weight=0.0)
    state, batch = _state(), _batch()
    logits, _ = state.apply_fn({"params": state.params}, batch["image"], train=True)
    targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], 10), 0.1)
    for threshold, want in ((None, targets), (0.2, jax.nn.one_hot(batch["label"], 10))):
        o = steps.StepOptions.default(**options, bce_target_threshold=threshold)
        step = functools.partial(steps.train_step, num_classes=10, schedule=SCHEDULE, options=o)
        _, metrics = jax.jit(step)(_state(), batch, jax.random.PRNGKey(0))
        expected = jnp.mean(losses.sigmoid_cross_entropy(logits, want))
        np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-6)
    with pytest.raises(ConfigError, match=r"bce_target_threshold=0\.2 binarises"):
        steps.StepOptions.default(bce_target_threshold=0.2)
