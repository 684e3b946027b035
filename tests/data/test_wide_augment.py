"""TrivialAugmentWide and AugMix (issue 31, item 5) against torchvision: the op tables are
torchvision's `_augmentation_space`, every op at a given magnitude gives torchvision's
`_apply_op` image (to one grey level: PIL-style rounding where torchvision truncates), and
AugMix's mix is a convex blend of the image and its chains."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # before TensorFlow (tests/conftest.py)
tva = pytest.importorskip("torchvision.transforms.autoaugment")
import tensorflow as tf  # noqa: E402

from cnnx.data import pp as pp_lib  # noqa: E402
from cnnx.data import wide_augment as wa  # noqa: E402
from cnnx.data.pp import PPContext  # noqa: E402

pytestmark = pytest.mark.torch


def _space_equal(ours, theirs):
    assert sorted(ours) == sorted(theirs)
    for name, (magnitudes, signed) in ours.items():
        ref, ref_signed = theirs[name]
        assert signed == ref_signed, name
        if ref.ndim == 0:
            assert magnitudes == (), name
        else:
            np.testing.assert_allclose(magnitudes, ref.numpy(), rtol=1e-6, atol=1e-5, err_msg=name)


def test_spaces_are_torchvisions():
    _space_equal(wa.trivial_augment_space(31), tva.TrivialAugmentWide()._augmentation_space(31))
    _space_equal(wa.augmix_space(11, 24, 30), tva.AugMix()._augmentation_space(11, (24, 30)))
    no_extra = tva.AugMix(all_ops=False)._augmentation_space(11, (24, 30))
    _space_equal(wa.augmix_space(11, 24, 30, all_ops=False), no_extra)


OPS = [
    ("ShearX", 0.3),
    ("ShearX", -0.9),
    ("ShearY", 0.7),
    ("TranslateX", 5.7),
    ("TranslateY", -3.2),
    ("Rotate", 30.0),
    ("Rotate", -100.0),
    ("Brightness", 0.5),
    ("Color", -0.5),
    ("Contrast", 0.6),
    ("Sharpness", 0.9),
    ("Posterize", 3.0),
    ("Solarize", 100.0),
    ("AutoContrast", 0.0),
    ("Equalize", 0.0),
    ("Identity", 0.0),
]


@pytest.mark.parametrize(("name", "magnitude"), OPS, ids=[f"{n}{m}" for n, m in OPS])
def test_each_op_is_torchvisions(name, magnitude):
    from torchvision.transforms import InterpolationMode

    yy, xx = np.mgrid[0:24, 0:20]
    noise = np.random.RandomState(0).randint(0, 40, (24, 20, 3))
    image = (np.stack([yy * 9, xx * 11, (yy + xx) * 5], -1) + noise).astype(np.uint8)
    ours = wa.apply_magnitude(name, tf.constant(image), magnitude).numpy().astype(int)
    ref = tva._apply_op(
        torch.from_numpy(image).permute(2, 0, 1), name, magnitude, InterpolationMode.NEAREST, None
    )
    ref = ref.permute(1, 2, 0).numpy().astype(int)
    assert np.abs(ours - ref).max() <= 1


def _run(pp, image, seeds, size):
    fn = pp_lib.build(pp, PPContext(image_size=size, channels=image.shape[-1]))
    ds = tf.data.Dataset.from_tensor_slices(np.array(seeds, np.int64))
    ds = ds.map(lambda s: fn({"image": tf.constant(image), "label": 0, "seed": s}))
    return [o["image"] for o in ds.as_numpy_iterator()]


@pytest.mark.parametrize("pp", ["resize|trivialaugment_wide", "resize|augmix(severity=5, width=2)"])
def test_pp_ops_in_tf_data(pp):
    image = np.random.RandomState(1).randint(0, 256, (30, 40, 3), np.uint8)
    outs = _run(pp, image, [(1, s) for s in range(8)] + [(1, 0)], 24)
    assert all(o.shape == (24, 24, 3) and o.dtype == np.uint8 for o in outs)
    np.testing.assert_array_equal(outs[0], outs[-1])  # the seed decides
    assert len({o.tobytes() for o in outs[:8]}) >= 6  # and different seeds differ


def test_augmix_blends_the_image_with_its_chains():
    # Every chain inverts: mix = m·x + (1 - m)·(255 - x), m ~ Beta(1, 1), truncated to uint8.
    image = np.zeros((4, 4, 3), np.uint8)
    image[:2] = 255
    only_invert = {"Invert": ((), False)}
    fn = tf.function(
        lambda seed: wa.augmix(tf.constant(image), seed, depth=1, space=only_invert),
        input_signature=[tf.TensorSpec((2,), tf.int64)],  # traced once
    )
    ms = []
    for seed in range(200):
        out = fn(tf.constant([seed, 7], tf.int64)).numpy().astype(float)
        assert np.all(out[:2] == out[0, 0, 0]) and np.all(out[2:] == out[2, 0, 0])
        assert 254 <= out[0, 0, 0] + out[2, 0, 0] <= 255
        ms.append(out[0, 0, 0] / 255.0)  # m, truncated to 1/255
    # Beta(1, 1) is uniform on [0, 1]: mean 1/2, variance 1/12.
    assert abs(np.mean(ms) - 0.5) < 0.07 and abs(np.var(ms) - 1 / 12) < 0.03
