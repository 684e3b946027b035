"""The basic preprocessing ops: decoding, resizing, crops, flips and normalisation.

Registered in the op registry (`cnnx.data.pp`), which composes them from a pp string such as
`"inception_crop|flip|normalize"` or `"resize_crop|normalize"`. These are the tf.data forms,
one example at a time; `decode`, `resize`, `resize_crop`, `random_crop`, `flip` and
`normalize` also have batched NumPy forms (`cnnx.data.batched_ops`, exactly these results),
which the pipelines use for in-memory data.
"""

import tensorflow as tf

from cnnx.data.pp import (  # noqa: F401 (IMAGENET_*: the config schema imports them from here)
    IMAGENET_MEAN,
    IMAGENET_STD,
    PPContext,
    decode,
    decode_crop,
    op,
    op_seed,
    resize,
)


@op("decode")
def decode_op(ctx: PPContext):
    """Decodes encoded images (JPEG/PNG/GIF/BMP) to the model's channels; arrays pass."""

    def fn(f):
        return {**f, "image": decode(f["image"], ctx.channels)}

    return fn


@op("inception_crop")
def inception_crop(ctx: PPContext, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Random-resized crop of Szegedy et al. 2014: a box of `scale` of the area and aspect
    `ratio`, resized to the target size. JPEG bytes are decoded only inside the box."""

    def fn(f):
        image = f["image"]
        seed = op_seed(f, 1)
        if image.dtype == tf.string:
            is_jpeg = tf.image.is_jpeg(image)
            shape = tf.cond(
                is_jpeg,
                lambda: tf.image.extract_jpeg_shape(image),
                lambda: tf.shape(decode(image, ctx.channels)),
            )
        else:
            shape = tf.shape(image)
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape,
            bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
            seed=seed,
            min_object_covered=0.0,
            aspect_ratio_range=ratio,
            area_range=scale,
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        if image.dtype == tf.string:
            crop = decode_crop(image, begin, size, ctx.channels)
        else:
            crop = tf.slice(image, begin, size)
            # A crop of data-dependent size loses every static dimension; the channels stay.
            crop.set_shape([None, None, image.shape[-1]])
        return {**f, "image": resize(crop, [ctx.image_size, ctx.image_size])}

    return fn


@op("resize")
def resize_op(ctx: PPContext):
    """Resize the whole image to the target size (no crop; small-image datasets)."""

    def fn(f):
        image = decode(f["image"], ctx.channels)
        return {**f, "image": resize(image, [ctx.image_size, ctx.image_size])}

    return fn


def _shorter_side_size(height, width, image_size: int, pct: float):
    """(height, width) after resizing the shorter side to ceil(image_size / pct), at least
    image_size each."""
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    short = tf.cast(tf.math.ceil(image_size / pct), tf.float32)
    scale = short / tf.minimum(h, w)
    new = tf.cast(tf.round(tf.stack([h * scale, w * scale])), tf.int32)
    return tf.maximum(new, image_size)


@op("resize_crop")
def resize_crop(ctx: PPContext, crop_pct=None):
    """Evaluation transform: resize the shorter side to size / crop_pct, then centre crop."""
    pct = crop_pct if crop_pct is not None else ctx.crop_pct
    s = ctx.image_size

    def fn(f):
        image = decode(f["image"], ctx.channels)
        new = _shorter_side_size(tf.shape(image)[0], tf.shape(image)[1], s, pct)
        image = resize(image, new)
        top, left = (new[0] - s) // 2, (new[1] - s) // 2
        image = image[top : top + s, left : left + s]
        image.set_shape([s, s, None])
        return {**f, "image": image}

    return fn


@op("random_crop")
def random_crop(ctx: PPContext, padding: int = 4):
    """CIFAR-style augmentation: resize to size, zero-pad by `padding`, random size crop."""

    def fn(f):
        image = resize(decode(f["image"], ctx.channels), [ctx.image_size, ctx.image_size])
        image = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
        c = tf.shape(image)[-1]
        image = tf.image.stateless_random_crop(
            image, tf.stack([ctx.image_size, ctx.image_size, c]), seed=op_seed(f, 2)
        )
        return {**f, "image": image}

    return fn


@op("flip")
def flip(ctx: PPContext):
    """Random horizontal flip."""
    del ctx

    def fn(f):
        return {**f, "image": tf.image.stateless_random_flip_left_right(f["image"], op_seed(f, 3))}

    return fn


@op("normalize")
def normalize(ctx: PPContext):
    """(x / 255 - mean) / std, per channel (a single value applies to every channel)."""

    def fn(f):
        image = tf.cast(f["image"], tf.float32) / 255.0
        mean = tf.constant(ctx.mean, tf.float32)
        std = tf.constant(ctx.std, tf.float32)
        return {**f, "image": (image - mean) / std}

    return fn
