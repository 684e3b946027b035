"""Test-time views: preprocessing ops that turn one image into a stack of V crops.

Registered as preprocessing ops, so an evaluation pp string such as `"tencrop|normalize"`
yields images of shape (V, S, S, C); the evaluator runs all views of a batch through the model
in one call and averages their softmax probabilities.

  center      1 view: shorter side to S / crop_pct, centre S×S crop.
  tencrop     10 views: the same resize, 4 corner + centre crops and their mirror images
              (Krizhevsky et al. 2012).
  multiscale  10 crops at each of several shorter-side scales (ResNet's evaluation: 224, 256,
              384, 480, 640 for S = 224, given as multiples of S): 50 views.
  googlenet   GoogLeNet's 144 crops (Szegedy et al. 2014 §10): shorter side at 4 scales
              (256, 288, 320, 352 for S = 224), 3 squares per scale (left/centre/right or
              top/centre/bottom), from each square 4 corners + centre S×S crops + the square
              resized to S, and the mirror image of each: 4 × 3 × 6 × 2 = 144.
Each op takes `flip=False` to drop the mirror images (half the views), e.g.
`--views="tencrop(flip=False)"`.
"""

import tensorflow as tf

from cnnx.data.pp import PPContext, op
from cnnx.data.pp import decode as _decode
from cnnx.data.pp import resize as _resize
from cnnx.errors import ConfigError

MULTISCALE_FACTORS = (1.0, 256 / 224, 384 / 224, 480 / 224, 640 / 224)
GOOGLENET_FACTORS = (256 / 224, 288 / 224, 320 / 224, 352 / 224)


def _resize_shorter(image, shorter):
    h = tf.cast(tf.shape(image)[0], tf.float32)
    w = tf.cast(tf.shape(image)[1], tf.float32)
    scale = tf.cast(shorter, tf.float32) / tf.minimum(h, w)
    size = tf.maximum(tf.cast(tf.round(tf.stack([h * scale, w * scale])), tf.int32), shorter)
    return _resize(image, size)


def _five_crops(image, size: int):
    """4 corners and the centre, in that order."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    offsets = [
        (0, 0),
        (0, w - size),
        (h - size, 0),
        (h - size, w - size),
        ((h - size) // 2, (w - size) // 2),
    ]
    return [image[t : t + size, left : left + size] for t, left in offsets]


def _with_flips(crops, flip: bool = True):
    """The crops and their mirror images (flip=False: the crops alone, for data such as digits
    or text where a mirror image is another thing)."""
    return crops + [tf.image.flip_left_right(c) for c in crops] if flip else crops


def _stack(crops, size: int, channels: int):
    views = tf.stack(crops)
    views.set_shape([len(crops), size, size, channels])
    return views


@op("center")
def center(ctx: PPContext, crop_pct=None):
    pct = crop_pct or ctx.crop_pct

    def fn(f):
        image = _resize_shorter(_decode(f["image"], ctx.channels), int(-(-ctx.image_size // pct)))
        crop = _five_crops(image, ctx.image_size)[4]
        return {**f, "image": _stack([crop], ctx.image_size, ctx.channels)}

    return fn


@op("tencrop")
def tencrop(ctx: PPContext, crop_pct=None, flip=True):
    pct = crop_pct or ctx.crop_pct

    def fn(f):
        shorter = round(ctx.image_size / pct)
        image = _resize_shorter(_decode(f["image"], ctx.channels), shorter)
        crops = _with_flips(_five_crops(image, ctx.image_size), flip)
        return {**f, "image": _stack(crops, ctx.image_size, ctx.channels)}

    return fn


@op("multiscale")
def multiscale(ctx: PPContext, scales=MULTISCALE_FACTORS, flip=True):
    def fn(f):
        image = _decode(f["image"], ctx.channels)
        crops = []
        for s in scales:
            resized = _resize_shorter(image, round(ctx.image_size * s))
            crops += _with_flips(_five_crops(resized, ctx.image_size), flip)
        return {**f, "image": _stack(crops, ctx.image_size, ctx.channels)}

    return fn


@op("googlenet")
def googlenet(ctx: PPContext, scales=GOOGLENET_FACTORS, flip=True):
    def fn(f):
        image = _decode(f["image"], ctx.channels)
        size = ctx.image_size
        crops = []
        for s in scales:
            resized = _resize_shorter(image, round(size * s))
            h, w = tf.shape(resized)[0], tf.shape(resized)[1]
            side = tf.minimum(h, w)
            # Three squares along the longer side: start, middle, end.
            for k in range(3):
                top = tf.where(h > w, (h - side) * k // 2, 0)
                left = tf.where(h > w, 0, (w - side) * k // 2)
                square = resized[top : top + side, left : left + side]
                six = [*_five_crops(square, size), _resize(square, [size, size])]
                crops += _with_flips(six, flip)
        return {**f, "image": _stack(crops, size, ctx.channels)}

    return fn


VIEW_OPS = {"center": 1, "tencrop": 10, "multiscale": 50, "googlenet": 144}


def view_pp(views: str | None, eval_pp: str) -> str:
    """The eval pp string with its resize/crop op replaced by a view op (`tencrop`, ...)."""
    if not views:
        return eval_pp
    if views.split("(")[0].strip() not in VIEW_OPS:
        raise ConfigError(f"Unknown --views={views!r}; use one of {sorted(VIEW_OPS)}.")
    ops = [p.strip() for p in eval_pp.split("|")]
    kept = [p for p in ops if p.split("(")[0] not in ("resize_crop", "resize", "decode")]
    return "|".join([views, *kept])
