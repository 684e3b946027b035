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


@pytest.mark.parametrize(
    ("mean", "std", "refused"),
    [((0.4,), (0.25,), True), (None, None, False)],
    ids=["other_normalisation", "same_normalisation"],
)
def test_init_checkpoint_must_be_fed_as_its_run_was(pretrained, tmp_path, mean, std, refused):
    """Starting from a run's weights with another input normalisation is refused before
    training (before: accepted silently, features of other inputs)."""
    config = tiny_config(**{"train.num_steps": 2})
    config.init.checkpoint = pretrained
    if mean is not None:
        config.data.mean, config.data.std = mean, std
    if refused:
        with pytest.raises(ConfigError, match=r"normalised with mean \[.*--config.data.mean="):
            finetune.check_init_normalization(config, "lenet5")
        with pytest.raises(ConfigError, match="normalised with mean"):
            train_and_evaluate(config, str(tmp_path))
        assert not (tmp_path / "checkpoints").exists()
    else:
        finetune.check_init_normalization(config, "lenet5")


@pytest.mark.parametrize(
    ("model", "mean", "std", "refused"),
    [
        ("resnet18", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False),
        ("resnet18", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), True),
        ("inception_v4", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True),  # timm: 0.5
        ("googlenet", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), False),  # transform_input=True
        ("googlenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False),  # =False
        ("googlenet", (0.2, 0.2, 0.2), (0.3, 0.3, 0.3), True),
    ],
)
def test_torch_weights_must_be_fed_as_their_reference(model, mean, std, refused):
    config = tiny_config()
    config.init.torch_weights = "weights.pth"
    config.data.mean, config.data.std = mean, std
    if refused:
        with pytest.raises(ConfigError, match=r"torch_weights=weights\.pth expects inputs"):
            finetune.check_init_normalization(config, model)
    else:
        finetune.check_init_normalization(config, model)


def test_adapt_input_conv_follows_timm():
    rng = np.random.default_rng(0)
    rgb = rng.normal(size=(7, 7, 3, 8)).astype(np.float32)
    grey = finetune.adapt_input_conv(rgb, 1)
    assert grey.shape == (7, 7, 1, 8) and grey.dtype == np.float32
    # A grey image through the summed kernel = the RGB kernel on it repeated over R, G, B.
    image = rng.normal(size=(7, 7)).astype(np.float32)
    np.testing.assert_allclose(
        np.einsum("hw,hwio->o", image, grey),
        np.einsum("hwc,hwco->o", np.repeat(image[..., None], 3, -1), rgb),
        rtol=1e-5,
    )
    # Other counts: RGB repeated, then scaled by 3 / channels (timm: repeat, [:in_chans], *3/n).
    five = finetune.adapt_input_conv(rgb, 5)
    assert five.shape == (7, 7, 5, 8)
    np.testing.assert_allclose(five[:, :, :3], rgb * 0.6, rtol=1e-6)
    np.testing.assert_allclose(five[:, :, 3:], rgb[:, :, :2] * 0.6, rtol=1e-6)
    np.testing.assert_array_equal(finetune.adapt_input_conv(rgb, 3), rgb)
    # Space-to-depth stems (4 RGB pixels: 12 channels) sum each RGB triple.
    s2d = rng.normal(size=(3, 3, 12, 4))
    np.testing.assert_allclose(
        finetune.adapt_input_conv(s2d, 1)[:, :, 1], s2d[:, :, 3:6].sum(2), rtol=1e-6
    )
    with pytest.raises(ConfigError, match="only RGB"):
        finetune.adapt_input_conv(rng.normal(size=(3, 3, 4, 8)), 2)


def test_rgb_weights_load_into_a_grey_model():
    """Only the stem (the one kernel that differs only in input channels) is adapted; every
    other mismatch is listed, all of them, each with how to keep it fresh."""
    rng = np.random.default_rng(0)
    source = {
        "params": {
            "stem": {"conv": {"kernel": rng.normal(size=(7, 7, 3, 8))}},
            "block": {"conv": {"kernel": rng.normal(size=(3, 3, 8, 8))}},
        }
    }
    target = {
        "params": {
            "stem": {"conv": {"kernel": np.zeros((7, 7, 1, 8), np.float32)}},
            "block": {"conv": {"kernel": np.zeros((3, 3, 8, 8), np.float32)}},
        }
    }
    merged, loaded, fresh = finetune.merge_variables(
        target, source, load_pattern=None, reset_head=False, head_pattern="^head"
    )
    stem = merged["params"]["stem"]["conv"]["kernel"]
    assert stem.shape == (7, 7, 1, 8) and stem.dtype == np.float32
    np.testing.assert_allclose(
        stem[:, :, 0], source["params"]["stem"]["conv"]["kernel"].sum(2), rtol=1e-5, atol=1e-6
    )
    assert "params/stem/conv/kernel" in loaded and not fresh
    # Two other mismatches: both reported in one error, with the load_pattern that skips each.
    source["params"]["block"]["conv"]["kernel"] = rng.normal(size=(3, 3, 8, 4))
    source["params"]["other"] = {"kernel": np.zeros(2)}
    target["params"]["other"] = {"kernel": np.zeros(3, np.float32)}
    with pytest.raises(CheckpointError) as e:
        finetune.merge_variables(
            target, source, load_pattern=None, reset_head=False, head_pattern="^head"
        )
    text = str(e.value)
    assert "(2 tensors)" in text and "params/block/conv/kernel" in text and "params/other" in text
    assert "--config.init.load_pattern='^(?!block/conv/)'" in text


def test_init_problems_are_reported_together(tmp_path):
    config = tiny_config()
    config.init.checkpoint = str(tmp_path / "missing")
    config.init.torch_weights = str(tmp_path / "missing.pth")
    with pytest.raises(ConfigError) as e:
        finetune.check_init(config, "lenet5")
    text = str(e.value)
    assert text.startswith("3 problems with the initial weights")
    assert "only one of" in text and "no such file" in text and "no such directory" in text


def test_grey_data_on_rgb_weights_asks_for_the_averaged_normalisation(tmp_path):
    """ImageNet weights fed one-channel data: the summed stem expects about the RGB average."""
    from cnnx.train import workdir as wd

    wd.write_text_atomic(
        wd.config_path(str(tmp_path)),
        '{"data": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}',
    )
    config = tiny_config()
    config.init.checkpoint = str(tmp_path)
    config.data.mean, config.data.std = (0.5,), (0.5,)
    with pytest.raises(ConfigError, match=r"--config.data.mean='\(0.449,\)'"):
        finetune.check_init_normalization(config, "lenet5")
    config.data.mean, config.data.std = (0.449,), (0.226,)
    finetune.check_init_normalization(config, "lenet5")
