"""Augmentation ops: run inside tf.data, shapes, value ranges, determinism, semantics."""

import numpy as np
import pytest
import tensorflow as tf

from cnnx.data import autoaugment
from cnnx.data import pp as pp_lib
from cnnx.data.pp import PPContext

RGB = PPContext(image_size=24, channels=3)
GRAY = PPContext(image_size=24, mean=(0.5,), std=(0.5,), channels=1)

# (pp string, context, value range of the output or None for normalised outputs).
CASES = [
    ("resnet_scale", RGB, (0, 255)),
    ("resnet_scale(min=1.0, max=1.5)|flip", GRAY, (0, 255)),
    ("inception_crop(scale=(0.5, 1))|color_jitter(hue=0.1)", RGB, (0, 255)),
    ("resize|color_jitter", GRAY, (0, 255)),
    ("resize|lighting", RGB, (0, 255)),
    ("resize|cutout(size=8)", RGB, (0, 255)),
    ("resize|normalize|random_erasing(prob=1.0)", RGB, None),
    ("inception_crop|autoaugment", RGB, (0, 255)),
    ("resize|autoaugment", GRAY, (0, 255)),
    ("resize|randaugment(num_ops=2, magnitude=9, magnitude_std=0.5, prob=0.5)", RGB, (0, 255)),
    ("resize|randaugment", GRAY, (0, 255)),
]


def _image(shape=(30, 40, 3), seed=0):
    return np.random.RandomState(seed).randint(0, 256, shape, np.uint8)


def _run(pp, ctx, image, seeds):
    """Outputs of `pp` inside tf.data for one image under each (a, b) seed."""
    fn = pp_lib.build(pp, ctx)
    ds = tf.data.Dataset.from_tensor_slices(np.array(seeds, np.int64))
    ds = ds.map(lambda s: fn({"image": tf.constant(image), "label": 0, "seed": s}))
    return [o["image"] for o in ds.as_numpy_iterator()]


@pytest.mark.parametrize("pp,ctx,bounds", CASES, ids=[f"{c[0]}-{c[1].channels}ch" for c in CASES])
def test_op_in_tf_data_shape_range_determinism(pp, ctx, bounds):
    image = _image((30, 40, ctx.channels))
    a, b, c = _run(pp, ctx, image, [(1, 2), (1, 2), (1, 3)])
    assert a.shape == (24, 24, ctx.channels)
    assert np.all(np.isfinite(a.astype(np.float32)))
    if bounds:
        assert a.min() >= bounds[0] and a.max() <= bounds[1]
    np.testing.assert_array_equal(a, b)  # same seed, same augmentation
    if "prob=0.5" not in pp and not pp.startswith("resize|autoaugment"):
        assert not np.array_equal(a, c)  # another seed, another augmentation


def test_resnet_scale_without_range_is_a_resize():
    image = _image((24, 24, 3))
    (out,) = _run("resnet_scale(min=1.0, max=1.0)", RGB, image, [(0, 1)])
    np.testing.assert_allclose(out, image, atol=1e-3)


def test_lighting_adds_one_colour_to_every_pixel():
    image = np.full((24, 24, 3), 128, np.uint8)
    (out,) = _run("lighting(alphastd=0.1)", RGB, image, [(4, 5)])
    shift = out - 128.0
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0, 0], shift.shape), atol=1e-4)
    assert 0 < np.abs(shift[0, 0]).max() < 20  # 255 · |eigvec · (α eigval)| with α ~ 0.1


def test_cutout_fills_a_square_with_the_mean():
    image = np.zeros((24, 24, 1), np.uint8)
    outs = _run("cutout(size=8)", GRAY, image, [(0, i) for i in range(8)])
    for out in outs:
        filled = out[..., 0] > 0
        assert 0 < filled.sum() <= 64
        np.testing.assert_allclose(out[filled], 127.5)
        rows, cols = np.where(filled)
        assert filled[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()


def test_random_erasing_area_and_probability():
    image = np.full((24, 24, 3), 7.0, np.float32)
    never = _run("random_erasing(prob=0.0)", RGB, image, [(0, 1)])[0]
    np.testing.assert_array_equal(never, image)
    for out in _run("random_erasing(prob=1.0)", RGB, image, [(0, i) for i in range(8)]):
        erased = np.any(out != 7.0, axis=-1)
        assert 0.02 * 576 * 0.5 <= erased.sum() <= 576 / 3 * 1.5
        assert abs(out[erased].mean()) < 1.0 and 0.5 < out[erased].std() < 1.5  # N(0, 1) fill


def test_color_jitter_keeps_gray_images_gray():
    image = np.repeat(_image((24, 24, 1)), 3, axis=-1)
    (out,) = _run(
        "color_jitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)", RGB, image, [(3, 3)]
    )
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=0.05)
    np.testing.assert_allclose(out[..., 0], out[..., 2], atol=0.05)


def _u8(x):
    return tf.constant(np.asarray(x, np.uint8))


def test_autoaugment_image_ops():
    ramp = _u8(np.tile(np.arange(0, 256, 16, dtype=np.uint8)[None, :, None], (4, 1, 3)))
    np.testing.assert_array_equal(autoaugment.invert(ramp), 255 - ramp.numpy())
    np.testing.assert_array_equal(autoaugment.posterize(ramp, 2), ramp.numpy() & 0b11000000)
    sol = autoaugment.solarize(ramp, 128.0).numpy()
    np.testing.assert_array_equal(sol, np.where(ramp < 128, ramp, 255 - ramp.numpy()))
    narrow = _u8(np.linspace(100, 150, 32 * 32 * 3).reshape(32, 32, 3))
    stretched = autoaugment.autocontrast(narrow).numpy()
    assert stretched.min() == 0 and stretched.max() == 255
    eq = autoaugment.equalize(narrow).numpy()
    assert eq.max() > 200 and eq.min() < 50
    img = _u8(_image((16, 16, 3)))
    for name in ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "Color", "Sharpness"):
        at_zero = autoaugment.apply_op(name, img, 0.0, tf.constant([0, 0], tf.int64))
        identity = 5.0 if name in ("Color", "Sharpness") else 0.0  # 'original' factor 1.0
        at_identity = autoaugment.apply_op(name, img, identity, tf.constant([0, 0], tf.int64))
        np.testing.assert_allclose(at_identity.numpy(), img.numpy(), atol=1)
        assert at_zero.dtype == tf.uint8 and at_zero.shape == img.shape
    moved = autoaugment.translate_x(img, 4.0).numpy()
    np.testing.assert_array_equal(moved[:, 4:], img.numpy()[:, :-4])
    np.testing.assert_array_equal(moved[:, :4], 128)


def test_policy_tables():
    assert len(autoaugment.IMAGENET_POLICY) == 25
    assert all(len(sub) == 2 for sub in autoaugment.IMAGENET_POLICY)
    assert len(autoaugment.RAND_OPS) == 15
    ops = {name for sub in autoaugment.IMAGENET_POLICY for name, _, _ in sub}
    img = _u8(_image((8, 8, 3)))
    for name in sorted(ops | set(autoaugment.RAND_OPS)):
        for convention in ("original", "increasing"):
            out = autoaugment.apply_op(name, img, 9.0, tf.constant([1, 2], tf.int64), convention)
            assert out.shape == img.shape and out.dtype == tf.uint8
