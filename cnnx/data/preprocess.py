"""Preprocessing ops, composed by a config string such as
`"inception_crop|flip|normalize"` or `"resize_crop|normalize"`.

Each op is a small named function registered with `@op(name)`; the string lists op names,
optionally with keyword arguments: `"inception_crop(scale=(0.25, 1))|flip"`. Ops read the
target size, crop ratio and normalisation constants from a `PPContext`, so changing the
model's resolution (compound scaling, FixRes) never means editing preprocessing strings.

Randomness is stateless: each example carries a `seed` (shape (2,), int64) derived from the
run seed, the epoch and the example's index, and each op folds in its own constant. The
same example in the same epoch is therefore augmented identically on resume, on any host.
"""

import ast
import dataclasses
from collections.abc import Callable

import tensorflow as tf

from cnnx.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class PPContext:
    """What ops need to know about the run."""

    image_size: int
    crop_pct: float = 0.875
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3


_OPS: dict[str, Callable] = {}


def op(name: str):
    """Registers `fn(ctx, **kwargs) -> (features -> features)` under `name`."""

    def wrap(fn):
        _OPS[name] = fn
        return fn

    return wrap


def _op_seed(features, salt: int):
    return tf.random.experimental.stateless_fold_in(features["seed"], salt)


def _decode_channels(channels: int) -> int:
    """The channel count to ask the decoder for: 3 for grey and RGB models, since some valid
    files cannot be decoded straight to one channel (CMYK JPEG, GIF, BMP)."""
    return 3 if channels in (1, 3) else channels


def _to_channels(image, channels: int):
    """A decoded image (3 channels for grey and RGB models) with the model's channel count."""
    if channels == 1:
        image = tf.image.rgb_to_grayscale(image)  # ITU-R 601 luma, as PIL's convert("L")
    image.set_shape([None, None, channels])
    return image


def _decode(image, channels: int):
    """Decodes encoded bytes (JPEG/PNG/GIF/BMP) or passes a uint8 tensor through.

    Files are decoded to three channels and then converted, so a one-channel model reads any
    valid file (CMYK JPEGs, GIFs and BMPs cannot be decoded to one channel directly)."""
    if image.dtype == tf.string:
        image = tf.io.decode_image(
            image, channels=_decode_channels(channels), expand_animations=False
        )
        image = _to_channels(image, channels)
    return image


def _resize(image, size):
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=True)
    return image


@op("decode")
def decode(ctx: PPContext):
    def fn(f):
        return {**f, "image": _decode(f["image"], ctx.channels)}

    return fn


@op("inception_crop")
def inception_crop(ctx: PPContext, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Random-resized crop of Szegedy et al. 2014: a box of `scale` of the area and aspect
    `ratio`, resized to the target size. JPEG bytes are decoded only inside the box."""

    def fn(f):
        image = f["image"]
        seed = _op_seed(f, 1)
        if image.dtype == tf.string:
            is_jpeg = tf.image.is_jpeg(image)
            shape = tf.cond(
                is_jpeg,
                lambda: tf.image.extract_jpeg_shape(image),
                lambda: tf.shape(_decode(image, ctx.channels)),
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
            window = tf.stack([begin[0], begin[1], size[0], size[1]])
            crop = tf.cond(
                tf.image.is_jpeg(image),
                lambda: _to_channels(
                    tf.image.decode_and_crop_jpeg(
                        image, window, channels=_decode_channels(ctx.channels)
                    ),
                    ctx.channels,
                ),
                lambda: tf.slice(_decode(image, ctx.channels), begin, size),
            )
            crop.set_shape([None, None, ctx.channels])
        else:
            crop = tf.slice(image, begin, size)
            # A crop of data-dependent size loses every static dimension; the channels stay.
            crop.set_shape([None, None, image.shape[-1]])
        return {**f, "image": _resize(crop, [ctx.image_size, ctx.image_size])}

    return fn


@op("resize")
def resize(ctx: PPContext):
    """Resize the whole image to the target size (no crop; small-image datasets)."""

    def fn(f):
        image = _decode(f["image"], ctx.channels)
        return {**f, "image": _resize(image, [ctx.image_size, ctx.image_size])}

    return fn


@op("resize_crop")
def resize_crop(ctx: PPContext, crop_pct=None):
    """Evaluation transform: resize the shorter side to size / crop_pct, then centre crop."""
    pct = crop_pct if crop_pct is not None else ctx.crop_pct

    def fn(f):
        image = _decode(f["image"], ctx.channels)
        h = tf.cast(tf.shape(image)[0], tf.float32)
        w = tf.cast(tf.shape(image)[1], tf.float32)
        short = tf.cast(tf.math.ceil(ctx.image_size / pct), tf.float32)
        scale = short / tf.minimum(h, w)
        new = tf.cast(tf.round(tf.stack([h * scale, w * scale])), tf.int32)
        new = tf.maximum(new, ctx.image_size)
        image = _resize(image, new)
        top = (new[0] - ctx.image_size) // 2
        left = (new[1] - ctx.image_size) // 2
        image = image[top : top + ctx.image_size, left : left + ctx.image_size]
        image.set_shape([ctx.image_size, ctx.image_size, None])
        return {**f, "image": image}

    return fn


@op("random_crop")
def random_crop(ctx: PPContext, padding: int = 4):
    """CIFAR-style augmentation: resize to size, zero-pad by `padding`, random size crop."""

    def fn(f):
        image = _resize(_decode(f["image"], ctx.channels), [ctx.image_size, ctx.image_size])
        image = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
        c = tf.shape(image)[-1]
        image = tf.image.stateless_random_crop(
            image, tf.stack([ctx.image_size, ctx.image_size, c]), seed=_op_seed(f, 2)
        )
        return {**f, "image": image}

    return fn


@op("flip")
def flip(ctx: PPContext):
    """Random horizontal flip."""
    del ctx

    def fn(f):
        return {**f, "image": tf.image.stateless_random_flip_left_right(f["image"], _op_seed(f, 3))}

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


def parse(pp: str) -> list[tuple[str, dict]]:
    """`"a|b(x=1)"` -> [('a', {}), ('b', {'x': 1})]; unknown ops raise `ConfigError`."""
    ops = []
    for part in filter(None, (p.strip() for p in pp.split("|"))):
        name, _, rest = part.partition("(")
        name = name.strip()
        if name not in _OPS:
            raise ConfigError(
                f"Unknown preprocessing op {name!r} in {pp!r}; "
                f"known ops: {', '.join(sorted(_OPS))}."
            )
        kwargs = {}
        if rest:
            try:
                call = ast.parse(f"f({rest}", mode="eval").body
                kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
            except (SyntaxError, ValueError) as e:
                raise ConfigError(f"Cannot parse arguments of op {part!r}: {e}") from None
        ops.append((name, kwargs))
    return ops


def build(pp: str, ctx: PPContext) -> Callable[[dict], dict]:
    """The composed preprocessing function of a pp string."""
    fns = []
    for name, kwargs in parse(pp):
        try:
            fns.append(_OPS[name](ctx, **kwargs))
        except TypeError as e:
            raise ConfigError(f"Bad arguments for preprocessing op {name!r}: {e}") from None

    def apply(features):
        for fn in fns:
            features = fn(features)
        return features

    return apply


def known_ops() -> list[str]:
    return sorted(_OPS)


# Registers the augmentation ops (color_jitter, randaugment, ...) whenever preprocess is used.
from cnnx.data import augment  # noqa: E402, F401
