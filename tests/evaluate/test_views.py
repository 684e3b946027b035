"""Test-time views and averaging: view counts, crop positions, flips, softmax averaging."""

import numpy as np
import pytest
import tensorflow as tf

from cnnx.checkpoint_eval import view_pp
from cnnx.data import PPContext, pp
from cnnx.evaluate import views
from cnnx.evaluate.classification import log_mean_probabilities

CTX = PPContext(image_size=8, crop_pct=1.0, channels=1, mean=(0.0,), std=(1.0,))


def _ramp(h=8, w=12):
    """An image whose value is its column index: crops reveal where they were taken."""
    return tf.constant(np.tile(np.arange(w, dtype=np.uint8), (h, 1))[..., None])


@pytest.mark.parametrize("name,count", sorted(views.VIEW_OPS.items()))
def test_view_counts(name, count):
    ctx = PPContext(image_size=16, crop_pct=0.875, channels=3)
    img = tf.constant(np.random.RandomState(0).randint(0, 255, (40, 56, 3), np.uint8))
    out = pp.build(f"{name}|normalize", ctx)({"image": img})["image"]
    assert out.shape == (count, 16, 16, 3)


def test_tencrop_positions_and_flips():
    out = pp.build("tencrop", CTX)({"image": _ramp()})["image"].numpy()[..., 0]
    # Shorter side 8 stays 8 (crop_pct 1): corners at columns 0-7 and 4-11, centre 2-9.
    means = out.mean(axis=(1, 2))
    np.testing.assert_allclose(means[:5], [3.5, 7.5, 3.5, 7.5, 5.5], atol=1e-4)
    np.testing.assert_allclose(out[5:], out[:5][:, :, ::-1], atol=1e-5)  # mirror images


def test_googlenet_has_three_squares_per_scale():
    ctx = PPContext(image_size=8, channels=1, mean=(0.0,), std=(1.0,))
    out = pp.build("googlenet(scales=(1.0,))", ctx)({"image": _ramp(8, 16)})["image"]
    out = out.numpy()[..., 0]
    assert out.shape == (36, 8, 8)
    # The 6th view of each square is the whole square resized: left, centre, right squares.
    squares = out[[5, 17, 29]].mean(axis=(1, 2))
    assert squares[0] < squares[1] < squares[2]


def test_probabilities_are_averaged_over_views():
    import jax.numpy as jnp

    def apply_fn(variables, x, train):
        # Logit 0 grows with the view's mean, so each view gets a different softmax.
        m = jnp.mean(x, axis=(1, 2, 3))
        return jnp.stack([m, jnp.zeros_like(m)], axis=-1) * variables["scale"]

    images = np.stack([np.full((3, 2, 2, 1), v, np.float32) for v in (0.0, 1.0)])
    images[0, 1] = 2.0  # example 0 has views with means 0, 2, 0
    log_probs, _ = log_mean_probabilities(({"scale": 1.0},), images, (apply_fn,))
    probs = np.exp(log_probs)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    np.testing.assert_allclose(probs[0, 0], (sig(0) + sig(2) + sig(0)) / 3, rtol=1e-6)
    np.testing.assert_allclose(probs[1, 0], sig(1.0), rtol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)


def test_view_pp_replaces_the_resize():
    assert view_pp("tencrop", "resize_crop|normalize") == "tencrop|normalize"
    assert view_pp(None, "resize|normalize") == "resize|normalize"
    with pytest.raises(ValueError, match="Unknown --views"):
        view_pp("twelvecrop", "resize|normalize")
