"""Fine-tuning: initialise from a checkpoint, new head, frozen backbone, slower backbone."""

import jax
import numpy as np
import optax
import pytest
from flax import traverse_util

from cnnx.errors import CheckpointError, ConfigError
from cnnx.train import finetune
from cnnx.train.checkpoint import load_variables
from cnnx.train.loop import train_and_evaluate
from tests.train.tiny import tiny_config


def _flat(tree):
    return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("pretrained"))
    train_and_evaluate(tiny_config(**{"train.num_steps": 40, "ckpt.every_steps": 40}), wd)
    return wd


def test_frozen_backbone_on_a_new_label_set(pretrained, tmp_path):
    config = tiny_config(**{"train.num_steps": 30, "ckpt.every_steps": 30})
    config.data.source = "digits:parity"  # even / odd: 2 classes instead of 10
    config.init.checkpoint = pretrained
    config.init.reset_head = True
    config.train.trainable = r"^output/"
    results = train_and_evaluate(config, str(tmp_path))
    before = _flat(load_variables(pretrained)["params"])
    after = _flat(load_variables(str(tmp_path))["params"])
    for path, value in after.items():
        if path.startswith("output/"):
            assert value.shape[-1] == 2 if path.endswith("kernel") else True
        else:
            np.testing.assert_array_equal(value, before[path], err_msg=path)  # bit-identical
    assert results["eval/top1"] > 85.0  # a linear probe on digit features solves parity


def test_head_shape_mismatch_needs_reset_head(pretrained, tmp_path):
    config = tiny_config()
    config.data.source = "digits:parity"
    config.init.checkpoint = pretrained
    with pytest.raises(CheckpointError, match="reset_head"):
        train_and_evaluate(config, str(tmp_path))


def test_partition_optimizer_freezes_and_slows():
    params = {"body": {"kernel": np.ones(3)}, "head": {"kernel": np.ones(2)}}
    grads = jax.tree.map(np.ones_like, params)
    tx = finetune.partition_optimizer(optax.sgd(1.0), trainable=r"^head/")
    updates, _ = tx.update(grads, tx.init(params), params)
    assert np.all(updates["body"]["kernel"] == 0) and np.all(updates["head"]["kernel"] == -1)
    tx = finetune.partition_optimizer(optax.sgd(1.0), None, r"^body/", 0.1)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["body"]["kernel"], -0.1)
    with pytest.raises(ConfigError, match="matches no parameter"):
        bad = finetune.partition_optimizer(optax.sgd(1.0), trainable="nothing")
        bad.init(params)


def test_bottom_up_loading_keeps_later_layers_fresh():
    target = {"params": {"c1": {"kernel": np.zeros(2)}, "c5": {"kernel": np.zeros(2)}}}
    source = {"params": {"c1": {"kernel": np.ones(2)}, "c5": {"kernel": np.ones(2)}}}
    merged, loaded, fresh = finetune.merge_variables(
        target, source, load_pattern=r"^c1/", reset_head=False, head_pattern="^output"
    )
    assert loaded == ["params/c1/kernel"] and fresh == ["params/c5/kernel"]
    assert merged["params"]["c1"]["kernel"][0] == 1 and merged["params"]["c5"]["kernel"][0] == 0


def test_fast_linear_probe_matches_the_slow_path(pretrained, tmp_path):
    import time

    from cnnx.train import linear_probe

    config = tiny_config(**{"train.num_steps": 25, "ckpt.every_steps": 25})
    config.data.source = "digits:loop"
    config.data.train_pp = "resize|normalize"  # deterministic: features never change
    config.init.checkpoint = pretrained
    config.init.reset_head = True
    config.train.trainable = r"^output/"
    t0 = time.time()
    slow = train_and_evaluate(config, str(tmp_path / "slow"))
    t_slow = time.time() - t0
    t0 = time.time()
    config.train.fast_linear_probe = True
    fast = linear_probe.run(config, str(tmp_path / "fast"))
    t_fast = time.time() - t0
    a = load_variables(str(tmp_path / "slow"))["params"]["output"]
    b = load_variables(str(tmp_path / "fast"))["params"]["output"]
    np.testing.assert_allclose(a["kernel"], b["kernel"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a["bias"], b["bias"], rtol=1e-4, atol=1e-5)
    assert abs(slow["eval/top1"] - fast["eval/top1"]) < 1.0
    print(f"linear probe: slow {t_slow:.1f}s, fast {t_fast:.1f}s")
