"""Layer-wise lr decay (issue 31, item 3): the update of each parameter is the optimizer's
times decay ** (n - 1 - depth), whatever the optimizer and schedule, times the regex
multiplier where it matches, and zero where frozen."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from cnnx import models
from cnnx.errors import ConfigError
from cnnx.models.layer_groups import STAGED
from cnnx.train import build, layer_decay, optim
from cnnx.train.loop import train_and_evaluate
from tests.train.tiny import tiny_config

PARAMS = {  # a staged network's paths: stem 0, two blocks 1 and 2, head 3
    "stem": {"conv": {"kernel": jnp.ones((3, 3, 1, 2))}},
    "stage1_block0": {"conv": {"kernel": jnp.ones((3, 3, 2, 2))}},
    "stage2_block0": {"conv": {"kernel": jnp.ones((3, 3, 2, 2))}, "bn": {"scale": jnp.ones(2)}},
    "head": {"fc": {"kernel": jnp.ones((2, 5)), "bias": jnp.ones(5)}},
}
EXPECTED = {  # decay 0.5: head 1, then halving per depth
    "stem/conv/kernel": 0.125,
    "stage1_block0/conv/kernel": 0.25,
    "stage2_block0/conv/kernel": 0.5,
    "stage2_block0/bn/scale": 0.5,
    "head/fc/kernel": 1.0,
    "head/fc/bias": 1.0,
}


def _flat(tree):
    return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def _grads(params):
    key = jax.random.PRNGKey(1)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


@pytest.mark.parametrize(
    "base",
    [
        optax.sgd(optax.cosine_decay_schedule(0.1, 10), momentum=0.9),
        optax.adamw(optax.linear_schedule(0.0, 1e-3, 5), weight_decay=0.05),
        optax.lamb(1e-3, weight_decay=0.05),
    ],
    ids=["sgd_cosine", "adamw_warmup", "lamb"],
)
def test_updates_are_scaled_by_depth(base):
    tx = optax.chain(base, layer_decay.scale_by_layer_decay(STAGED, 0.5))
    params, plain_state, state = PARAMS, base.init(PARAMS), tx.init(PARAMS)
    for _ in range(3):  # past the first step: momentum and moments carry the scaling through
        grads = _grads(params)
        plain, plain_state = base.update(grads, plain_state, params)
        scaled, state = tx.update(grads, state, params)
        for path, value in _flat(scaled).items():
            np.testing.assert_allclose(value, EXPECTED[path] * _flat(plain)[path], rtol=1e-6)
        params = optax.apply_updates(params, plain)


def _resnet_config(**train):
    config = tiny_config(**{"model.name": "resnet20_cifar", "optim.layer_decay": 0.5, **train})
    config.optim.weight_decay = 0.0
    return config


def _resnet_params():
    model = models.create("resnet20_cifar", num_classes=10)
    init = lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)  # noqa: E731
    return jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), jax.eval_shape(init)["params"])


def test_make_tx_multiplies_layer_decay_regex_multiplier_and_frozen():
    config = _resnet_config(
        **{
            "train.lr_mult_pattern": "^stage1_",
            "train.lr_mult": 0.1,
            "train.trainable": "^(?!stem)",
        }
    )
    params = _resnet_params()
    schedule = optax.constant_schedule(0.1)
    tx = build.make_tx(config, schedule)
    plain_tx = optim.make_optimizer(config.optim, schedule)
    grads = _grads(params)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    plain, _ = jax.jit(plain_tx.update)(grads, plain_tx.init(params), params)
    mult = layer_decay.effective_multipliers(config, params)
    depth, n = STAGED.depths(mult)
    assert n == 11  # stem, 9 blocks, head
    for path, value in _flat(updates).items():
        expected = 0.5 ** (n - 1 - depth[path])
        if path.startswith("stem"):
            expected = 0.0
        elif path.startswith("stage1_"):
            expected *= 0.1
        assert mult[path] == pytest.approx(expected)
        np.testing.assert_allclose(value, expected * _flat(plain)[path], rtol=1e-5, atol=1e-12)
    table = "\n".join(layer_decay.multiplier_table(config, params))
    assert "0.0001953" in table  # stage1_block0, depth 1: 0.5 ** 9 * 0.1
    assert "head/fc" in table.splitlines()[-1]


def test_a_family_without_layer_groups_is_refused():
    config = tiny_config(**{"optim.layer_decay": 0.75})  # LeNet-5 declares none
    with pytest.raises(ConfigError, match=r"declares no layer groups.*resnet"):
        build.make_tx(config, optax.constant_schedule(0.1))


@pytest.mark.slow  # a ResNet-20 compiled for 2 steps: ~40 s on the shared host
def test_training_with_layer_decay_logs_the_multipliers(tmp_path, caplog):
    config = _resnet_config(**{"train.num_steps": 2, "ckpt.every_steps": 2})
    with caplog.at_level("INFO"):
        train_and_evaluate(config, str(tmp_path))
    assert "Learning-rate multipliers per depth (layer_decay=0.5)" in caplog.text
    assert "0.0009766" in caplog.text  # the stem, depth 0 of 11: 0.5 ** 10
