"""Mixup / CutMix on device: label mass, box area, determinism, jit without recompiles."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnx.data import mixing

B, H, W, C, K = 8, 12, 10, 3, 5

# (mixup_alpha, cutmix_alpha, switch_prob): mixup only, cutmix only, both.
CASES = [(0.8, 0.0, 0.5), (0.0, 1.0, 0.5), (0.8, 1.0, 0.5)]


def _batch(seed=0):
    rng = np.random.RandomState(seed)
    return jnp.asarray(rng.randn(B, H, W, C), jnp.float32), jnp.asarray(rng.randint(0, K, B))


@functools.partial(jax.jit, static_argnames=("mixup", "cutmix", "switch", "prob", "smoothing"))
def _mix(rng, images, labels, *, mixup, cutmix, switch=0.5, prob=1.0, smoothing=0.0):
    return mixing.mix_batch(
        rng,
        images,
        labels,
        K,
        mixup_alpha=mixup,
        cutmix_alpha=cutmix,
        prob=prob,
        switch_prob=switch,
        label_smoothing=smoothing,
    )


@pytest.mark.parametrize("mixup,cutmix,switch", CASES, ids=["mixup", "cutmix", "both"])
def test_label_mass_and_determinism(mixup, cutmix, switch):
    images, labels = _batch()
    compiled = None
    for i in range(5):
        rng = jax.random.PRNGKey(i)
        out, targets, lam = _mix(
            rng, images, labels, mixup=mixup, cutmix=cutmix, switch=switch, smoothing=0.1
        )
        np.testing.assert_allclose(targets.sum(-1), 1.0, atol=1e-6)
        assert out.shape == images.shape and out.dtype == images.dtype
        assert 0.0 <= float(lam) <= 1.0
        again = _mix(rng, images, labels, mixup=mixup, cutmix=cutmix, switch=switch, smoothing=0.1)
        np.testing.assert_array_equal(out, again[0])
        compiled = compiled or _mix._cache_size()
    assert _mix._cache_size() == compiled  # new draws never recompile


def test_mixup_is_a_convex_combination_with_the_reversed_batch():
    images, labels = _batch()
    out, targets, lam = _mix(jax.random.PRNGKey(3), images, labels, mixup=0.8, cutmix=0.0)
    np.testing.assert_allclose(out, lam * images + (1 - lam) * images[::-1], atol=1e-5)
    onehot = jax.nn.one_hot(labels, K)
    np.testing.assert_allclose(targets, lam * onehot + (1 - lam) * onehot[::-1], atol=1e-6)


def test_cutmix_label_weight_is_the_pasted_area():
    images, labels = _batch()
    for i in range(10):
        out, targets, lam = _mix(jax.random.PRNGKey(i), images, labels, mixup=0.0, cutmix=1.0)
        pasted = np.asarray(jnp.any(out != images, axis=-1)[0])  # pixels taken from the pair
        np.testing.assert_allclose(1.0 - pasted.mean(), lam, atol=1e-6)
        if pasted.any():
            rows, cols = np.where(pasted)
            assert pasted[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
            np.testing.assert_array_equal(out[0][pasted], images[-1][pasted])
        onehot = jax.nn.one_hot(labels, K)
        np.testing.assert_allclose(targets, lam * onehot + (1 - lam) * onehot[::-1], atol=1e-6)


def test_switch_prob_and_mix_prob():
    images, labels = _batch()
    kinds = set()
    for i in range(20):
        out, _, lam = _mix(jax.random.PRNGKey(i), images, labels, mixup=0.8, cutmix=1.0)
        changed = np.asarray(jnp.any(out != images, axis=-1)[0])
        kinds.add("cutmix" if 0 < changed.mean() < 1 or lam == 1 else "mixup")
    assert kinds == {"cutmix", "mixup"}
    out, targets, lam = _mix(
        jax.random.PRNGKey(0), images, labels, mixup=0.8, cutmix=1.0, prob=0.0, smoothing=0.1
    )
    np.testing.assert_array_equal(out, images)
    assert float(lam) == 1.0
    np.testing.assert_allclose(targets, mixing.soft_targets(labels, K, 0.1), atol=1e-7)


def test_soft_targets_match_timm_smoothing():
    t = mixing.soft_targets(jnp.array([2]), 4, 0.1)
    np.testing.assert_allclose(t, [[0.025, 0.025, 0.925, 0.025]], atol=1e-7)
