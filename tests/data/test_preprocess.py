"""Preprocessing ops: static shapes on in-memory arrays, decoding of every valid file kind."""

import io

import numpy as np
import pytest
import tensorflow as tf

import cnnx.evaluate.views  # noqa: F401 (registers the test-time view ops)
from cnnx.data import pp as pp_lib

SIZE = 24


def _ctx(channels: int) -> pp_lib.PPContext:
    return pp_lib.PPContext(
        image_size=SIZE, channels=channels, mean=(0.5,) * channels, std=(0.5,) * channels
    )


def _ops(channels: int) -> list[str]:
    assert pp_lib.load_ops()  # every op module, registered
    # lighting is RGB-only (it refuses other channel counts when built).
    return [o for o in sorted(pp_lib.OPS) if not (o == "lighting" and channels != 3)]


def _traced_shape(pp: str, ctx, image_spec: tf.TensorSpec) -> tf.TensorShape:
    """The static shape of the op's output image, traced as tf.data traces it: the image and
    the per-example seed are graph inputs (not constants that shape inference could fold)."""
    fn = pp_lib.build(pp, ctx)

    @tf.function(input_signature=[image_spec, tf.TensorSpec([2], tf.int64)])
    def apply(image, seed):
        return fn({"image": image, "label": tf.constant(0), "seed": seed})["image"]

    return apply.get_concrete_function().structured_outputs.shape


@pytest.mark.parametrize("channels", [1, 3])
def test_every_op_keeps_the_channel_dimension_of_in_memory_images(channels):
    # inception_crop on one-channel arrays (digits) used to give (S, S, None), which the
    # pipeline then refused, naming the inception_crop that was already there (issue 16.11).
    spec = tf.TensorSpec([None, None, channels], tf.uint8)  # TFDS arrays: any size
    lost = {}
    for name in _ops(channels):
        shape = _traced_shape(name, _ctx(channels), spec)
        if shape.rank is None or shape[-1] != channels:
            lost[name] = shape
    assert not lost


def _encoded(fmt: str, mode: str = "RGB") -> bytes:
    pixels = np.random.RandomState(0).randint(0, 255, (30, 34, 3), np.uint8)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buf, fmt)
    return buf.getvalue()


FILES = {
    "cmyk_jpeg": ("JPEG", "CMYK"),
    "grey_jpeg": ("JPEG", "L"),
    "gif": ("GIF", "RGB"),
    "bmp": ("BMP", "RGB"),
    "png": ("PNG", "RGB"),
}
DECODING_PPS = ["decode|resize", "inception_crop", "resize_crop", "random_crop", "resnet_scale"]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", list(FILES))
def test_valid_files_decode_for_one_and_three_channel_models(kind, channels):
    # A CMYK JPEG (or a GIF, a BMP) cannot be decoded straight to one channel: TF refused it
    # ("Unsupported color conversion request") and the run stopped, naming no file.
    data = tf.constant(_encoded(*FILES[kind]))
    seed = tf.constant([3, 4], tf.int64)
    for pp in DECODING_PPS:
        out = pp_lib.build(pp, _ctx(channels))({"image": data, "label": 0, "seed": seed})
        assert out["image"].shape == (SIZE, SIZE, channels), (pp, out["image"].shape)


def test_one_channel_decode_is_the_luma_of_the_colour_image():
    from PIL import Image

    data = _encoded("PNG")
    grey = pp_lib.build("decode", _ctx(1))({"image": tf.constant(data)})["image"].numpy()
    want = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    assert np.abs(grey[..., 0].astype(int) - want).max() <= 1
