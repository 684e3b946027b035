"""The NumPy batched ops (cnnx.data.batched_ops) against TensorFlow: `tf.image.resize` and every
per-example op as tf.data runs it, bit for bit."""

import numpy as np
import pytest
import tensorflow as tf

from cnnx.data import batched_ops
from cnnx.data import pp as pp_lib
from cnnx.data.pp import PPContext

# (input side, output side): the digits' 8 px to the models' 32, 16 and 24, identity,
# up- and downsampling by odd ratios, one-pixel images.
RESIZES = [
    (8, 32),
    (8, 16),
    (8, 24),
    (8, 8),
    (13, 20),
    (15, 16),
    (37, 36),
    (40, 24),
    (100, 24),
    (224, 160),
    (7, 3),
    (1, 5),
]


@pytest.mark.parametrize("size_in,size_out", RESIZES, ids=[f"{a}to{b}" for a, b in RESIZES])
def test_resize_is_tf_image_resize(size_in, size_out):
    rng = np.random.RandomState(size_in * 100 + size_out)
    for width_in, width_out in ((size_in, size_out), (size_in + 3, size_out + 1)):
        for images in (
            rng.randint(0, 256, (3, size_in, width_in, 2)).astype(np.uint8),
            rng.normal(size=(2, size_in, width_in, 3)).astype(np.float32),
        ):
            want = tf.image.resize(
                tf.cast(images, tf.float32),
                [size_out, width_out],
                method="bilinear",
                antialias=True,
            )
            got = batched_ops.resize(images, size_out, width_out)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want.numpy())


def test_shorter_side_size_is_the_per_example_ops():
    from cnnx.data.preprocess import _shorter_side_size  # the reference

    for h, w in ((8, 8), (13, 17), (375, 500), (500, 333), (1, 40)):
        for size, pct in ((32, 0.875), (24, 0.5), (224, 0.875), (299, 0.9), (16, 1.0), (7, 1 / 3)):
            want = tuple(_shorter_side_size(h, w, size, pct).numpy())
            assert batched_ops.shorter_side_size(h, w, size, pct) == want, (h, w, size, pct)


CONTEXTS = {
    "digits32": PPContext(image_size=32, mean=(0.5,), std=(0.5,), channels=1),
    "gray16": PPContext(image_size=16, mean=(0.3,), std=(0.7,), channels=1),
    "rgb20": PPContext(image_size=20, channels=3),  # ImageNet mean / std
    "rgb24": PPContext(image_size=24, crop_pct=0.9, mean=(0.5, 0.4, 0.3), channels=3),
}
PPS = [
    "random_crop(padding=2)|normalize",
    "random_crop(padding=4)|flip|normalize",
    "random_crop(padding=0)",
    "decode|resize|flip|normalize",
    "resize_crop|normalize",
    "resize_crop(crop_pct=0.5)|normalize",
    "flip",
    "normalize",
    "decode",
]


def _per_example_in_tf_data(pp: str, ctx: PPContext, images, seeds) -> np.ndarray:
    """The per-example op's images as the pipelines run it: mapped inside tf.data (whose
    functions divide where a bare tf.function would multiply by a reciprocal)."""
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "seed": seeds})
    ds = ds.map(pp_lib.build(pp, ctx))
    return np.stack([f["image"] for f in ds.as_numpy_iterator()])


@pytest.mark.parametrize("name", list(CONTEXTS))
def test_every_batched_op_is_its_per_example_op(name):
    ctx = CONTEXTS[name]
    rng = np.random.RandomState(len(name))
    for shape in ((8, 8), (13, 17), (ctx.image_size, ctx.image_size)):
        images = rng.randint(0, 256, (10, *shape, ctx.channels)).astype(np.uint8)
        # The pipelines' seeds: (epoch seed, example index).
        seeds = np.stack([rng.randint(0, 2**31 - 1, 10), rng.randint(0, 3000, 10)], 1)
        seeds = seeds.astype(np.int64)
        for pp in PPS:
            want = _per_example_in_tf_data(pp, ctx, images, seeds)
            got = pp_lib.build_batched(pp, ctx)({"image": images, "seed": seeds})["image"]
            assert got.dtype == want.dtype, (shape, pp)
            np.testing.assert_array_equal(got, want, err_msg=f"{shape} {pp}")


def test_batched_ops_refuse_encoded_files():
    files = np.array([b"\xff\xd8", b"\x89PNG"], dtype=object)
    with pytest.raises(ValueError, match="decoded images"):
        batched_ops.decode(CONTEXTS["rgb20"])({"image": files})
