"""AutoAugment and RandAugment image operations on uint8 images, in TensorFlow graph code.

Operations follow PIL / timm (`timm.data.auto_augment`) and the TensorFlow TPU reference
(`tensorflow/tpu/models/official/efficientnet/autoaugment.py`): blends are `a + f·(b - a)`
clipped to 0-255, geometric ops fill with grey 128. Magnitudes are levels 0-10. Two level
conventions exist for a few ops and both are kept:

- 'original' (the AutoAugment paper's ranges, used by its ImageNet policy): Posterize keeps
  4-8 bits, Solarize threshold 0-256, enhancement factors 0.1-1.9.
- 'increasing' (timm's `*Increasing` ops, RandAugment in DeiT/ConvNeXt, 'inc1'): severity
  grows with the level: Posterize keeps 4 down to 0 bits, Solarize threshold 256 down to 0,
  enhancement factor 1 ± 0.9·level/10.

Randomness is stateless: the op choice, application coin, random signs and magnitude noise
all come from `tf.random.stateless_*` with seeds folded from the example seed.
"""

import math

import tensorflow as tf

FILL = 128

# AutoAugment's ImageNet policy (Cubuk et al. 2018, appendix; timm "original"): 25
# sub-policies of two (op, probability, level) steps.
IMAGENET_POLICY = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, 2)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, 8), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
    (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)),
    (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
)

# timm's _RAND_INCREASING_TRANSFORMS.
RAND_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
)


def _fold(seed, i):
    return tf.random.experimental.stateless_fold_in(seed, i)


def _to_u8(x):
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def _blend(a, b, factor):
    """a + factor · (b - a) on the 0-255 scale (PIL ImageEnhance)."""
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    return _to_u8(a + factor * (b - a))


def _gray(image):
    x = tf.cast(image, tf.float32)
    if image.shape[-1] == 3:
        x = tf.image.rgb_to_grayscale(x)
    return tf.broadcast_to(x, tf.shape(image))


def autocontrast(image):
    """Stretches each channel to 0-255 (PIL ImageOps.autocontrast, no cutoff); a flat
    channel stays as it is. uint8 (H, W, C) in and out."""
    x = tf.cast(image, tf.float32)
    lo = tf.reduce_min(x, axis=[0, 1], keepdims=True)
    hi = tf.reduce_max(x, axis=[0, 1], keepdims=True)
    scaled = (x - lo) * 255.0 / tf.maximum(hi - lo, 1.0)
    return _to_u8(tf.where(hi > lo, scaled, x))


def equalize(image):
    """Per-channel histogram equalisation (PIL ImageOps.equalize)."""

    def channel(c):
        im = tf.cast(c, tf.int32)
        histo = tf.histogram_fixed_width(im, [0, 255], nbins=256)
        nonzero = tf.boolean_mask(histo, histo > 0)
        step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255

        def lut():
            table = (tf.cumsum(histo) + step // 2) // tf.maximum(step, 1)
            table = tf.clip_by_value(tf.concat([[0], table[:-1]], 0), 0, 255)
            return tf.gather(table, im)

        return tf.cast(tf.cond(step > 0, lut, lambda: im), tf.uint8)

    channels = [channel(image[:, :, i]) for i in range(image.shape[-1])]
    return tf.stack(channels, axis=-1)


def invert(image):
    """255 - x (PIL ImageOps.invert); uint8 in and out."""
    return 255 - image


def posterize(image, bits):
    """Keeps the `bits` (1-8) high bits of each value (PIL ImageOps.posterize); uint8."""
    shift = tf.cast(8 - bits, tf.uint8)
    return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)


def solarize(image, threshold):
    """Inverts values at or above `threshold` (0-256; PIL ImageOps.solarize); uint8."""
    x = tf.cast(image, tf.float32)
    return _to_u8(tf.where(x < threshold, x, 255.0 - x))


def solarize_add(image, addition, threshold=128.0):
    """Adds `addition` to values below `threshold`, clipped to 0-255 (the TF/timm
    SolarizeAdd op); uint8."""
    x = tf.cast(image, tf.float32)
    return _to_u8(tf.where(x < threshold, x + addition, x))


def color(image, factor):
    """Saturation as PIL ImageEnhance.Color: blends the grey image (factor 0) with the
    image (1); factors > 1 extrapolate. uint8 in and out."""
    return _blend(_gray(image), image, factor)


def contrast(image, factor):
    """Contrast as PIL ImageEnhance.Contrast: blends the image's mean grey level (factor 0)
    with the image (1). uint8 in and out."""
    mean = tf.reduce_mean(_gray(image))
    return _blend(tf.fill(tf.shape(image), mean), image, factor)


def brightness(image, factor):
    """Brightness as PIL ImageEnhance.Brightness: blends black (factor 0) with the image
    (1). uint8 in and out."""
    return _blend(tf.zeros_like(image, tf.float32), image, factor)


def sharpness(image, factor):
    """Blend with PIL's SMOOTH-filtered image; the one-pixel border stays unfiltered."""
    x = tf.cast(image, tf.float32)
    c = image.shape[-1]
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, c, 1])
    smooth = tf.nn.depthwise_conv2d(x[None], kernel, [1, 1, 1, 1], "VALID")[0]
    smooth = tf.round(smooth)
    border = tf.pad(tf.ones_like(smooth), [[1, 1], [1, 1], [0, 0]])
    smooth = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    degenerate = smooth * border + x * (1 - border)
    return _blend(degenerate, x, factor)


def transform(image, matrix, fill=FILL, interpolation="BILINEAR"):
    """Projective transform mapping output (x, y) to input coordinates; `fill` outside (grey
    by default; torchvision's TrivialAugment and AugMix fill black and sample NEAREST)."""
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None],
        transforms=tf.cast(tf.reshape(matrix, [1, 8]), tf.float32),
        output_shape=tf.shape(image)[:2],
        fill_value=float(fill),
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )[0]
    return _to_u8(out)


def rotate(image, degrees, **fill_and_interpolation):
    """Rotation by `degrees` about the image centre, bilinear, the
    uncovered corners filled with grey (FILL). uint8 (H, W, C) in and out."""
    h = tf.cast(tf.shape(image)[0], tf.float32)
    w = tf.cast(tf.shape(image)[1], tf.float32)
    a = degrees * math.pi / 180.0
    cos, sin = tf.cos(a), tf.sin(a)
    x_off = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2.0
    y_off = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2.0
    matrix = tf.stack([cos, -sin, x_off, sin, cos, y_off, 0.0, 0.0])
    return transform(image, matrix, **fill_and_interpolation)


def shear_x(image, s, **fill_and_interpolation):
    """Horizontal shear: output (x, y) reads input (x + s·y, y); grey fill; uint8."""
    return transform(
        image, tf.stack([1.0, s, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]), **fill_and_interpolation
    )


def shear_y(image, s, **fill_and_interpolation):
    """Vertical shear: output (x, y) reads input (x, y + s·x); grey fill; uint8."""
    return transform(
        image, tf.stack([1.0, 0.0, 0.0, s, 1.0, 0.0, 0.0, 0.0]), **fill_and_interpolation
    )


def translate_x(image, pixels, **fill_and_interpolation):
    """Shifts the image right by `pixels` (may be fractional or negative); grey fill."""
    matrix = tf.stack([1.0, 0.0, -pixels, 0.0, 1.0, 0.0, 0.0, 0.0])
    return transform(image, matrix, **fill_and_interpolation)


def translate_y(image, pixels, **fill_and_interpolation):
    """Shifts the image down by `pixels` (may be fractional or negative); grey fill."""
    matrix = tf.stack([1.0, 0.0, 0.0, 0.0, 1.0, -pixels, 0.0, 0.0])
    return transform(image, matrix, **fill_and_interpolation)


def apply_op(name: str, image, level, seed, convention: str = "original"):
    """Applies op `name` at `level` (0-10, float tensor). Signed ops flip sign at random."""
    level = tf.cast(level, tf.float32) / 10.0
    sign = tf.where(tf.random.stateless_uniform((), seed) < 0.5, -1.0, 1.0)
    inc = convention == "increasing"
    side = tf.cast(tf.shape(image)[1], tf.float32)
    if name == "AutoContrast":
        return autocontrast(image)
    if name == "Equalize":
        return equalize(image)
    if name == "Invert":
        return invert(image)
    if name == "Rotate":
        return rotate(image, sign * 30.0 * level)
    if name == "Posterize":
        bits = 4 - tf.cast(level * 4, tf.int32) if inc else 4 + tf.cast(level * 4, tf.int32)
        return posterize(image, tf.clip_by_value(bits, 0, 8))
    if name == "Solarize":
        return solarize(image, 256.0 - 256.0 * level if inc else 256.0 * level)
    if name == "SolarizeAdd":
        return solarize_add(image, 110.0 * level)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        factor = 1.0 + sign * 0.9 * level if inc else 1.8 * level + 0.1
        fn = {"Color": color, "Contrast": contrast, "Brightness": brightness}.get(name, sharpness)
        return fn(image, factor)
    if name == "ShearX":
        return shear_x(image, sign * 0.3 * level)
    if name == "ShearY":
        return shear_y(image, sign * 0.3 * level)
    if name == "TranslateX":  # timm TranslateXRel: up to 45% of the side
        return translate_x(image, sign * 0.45 * level * side)
    if name == "TranslateY":
        return translate_y(image, sign * 0.45 * level * side)
    raise ValueError(f"unknown augmentation op {name!r}")


def _maybe(image, prob, seed, fn):
    if prob >= 1.0:
        return fn()
    if prob <= 0.0:
        return image
    return tf.cond(tf.random.stateless_uniform((), seed) < prob, fn, lambda: image)


def _switch_op(names, index, image, level, seed, convention):
    """`apply_op(names[index], ...)` as one `tf.switch_case` (index is a tensor)."""
    shape = image.shape
    branches = [
        (lambda name=name: apply_op(name, image, level, seed, convention)) for name in names
    ]
    out = tf.switch_case(index, branches)
    out.set_shape(shape)
    return out


def auto_augment(image, seed, policy=IMAGENET_POLICY):
    """One random sub-policy of `policy` applied to a uint8 HWC image.

    The sub-policy's (op, probability, level) of each step are gathered from constant tables,
    so the graph holds one switch over the policy's distinct ops per step, not one branch per
    sub-policy (tracing stays fast).
    """
    names = sorted({name for sub in policy for name, _, _ in sub})
    index = tf.random.stateless_uniform((), seed, 0, len(policy), dtype=tf.int32)
    x = image
    for i in range(len(policy[0])):
        s = _fold(seed, 10 + i)
        op = tf.gather([names.index(sub[i][0]) for sub in policy], index)
        prob = tf.gather([float(sub[i][1]) for sub in policy], index)
        level = tf.gather([float(sub[i][2]) for sub in policy], index)
        apply = tf.random.stateless_uniform((), _fold(s, 0)) < prob
        x = tf.cond(
            apply,
            lambda x=x, op=op, level=level, s=s: _switch_op(
                names, op, x, level, _fold(s, 1), "original"
            ),
            lambda x=x: x,
        )
        x.set_shape(image.shape)
    return x


def rand_augment(image, seed, *, num_ops=2, magnitude=9.0, magnitude_std=0.0, prob=1.0):
    """RandAugment on a uint8 HWC image with timm's increasing-severity ops."""
    shape = image.shape
    x = image
    for i in range(num_ops):
        s = _fold(seed, i)
        index = tf.random.stateless_uniform((), _fold(s, 0), 0, len(RAND_OPS), dtype=tf.int32)
        level = tf.constant(float(magnitude))
        if magnitude_std > 0:
            level += magnitude_std * tf.random.stateless_normal((), _fold(s, 1))
        level = tf.clip_by_value(level, 0.0, 10.0)

        def choose(x=x, index=index, level=level, s=s):
            return _switch_op(RAND_OPS, index, x, level, _fold(s, 2), "increasing")

        x = _maybe(x, prob, _fold(s, 3), choose)
        x.set_shape(shape)
    return x
