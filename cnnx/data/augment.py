"""Training augmentations as preprocessing ops (registered in `cnnx.data.pp`).

    "resnet_scale|flip|lighting|normalize"                          He et al. 2015
    "inception_crop|flip|color_jitter|normalize"                    Szegedy et al. 2014
    "inception_crop|flip|autoaugment|normalize"                     Cubuk et al. 2018
    "inception_crop|flip|randaugment(magnitude=9)|normalize|random_erasing(prob=0.25)"  DeiT
    "inception_crop|flip|trivialaugment_wide|normalize|random_erasing(prob=0.1)"  torchvision v2
    "inception_crop|flip|augmix|normalize"                          Hendrycks et al. 2020

Geometric and colour ops work on 0-255 images (uint8 or float) and must come before
`normalize`; `random_erasing` comes after it (it fills with unit-normal noise, as timm). All
randomness is stateless, seeded by the example's `seed` folded with a per-op constant, so an
example is augmented identically on resume and on any host. AutoAugment / RandAugment choose
their sub-policies and ops with stateless random integers and `tf.switch_case`, on uint8
images (the `cnnx.data.autoaugment` module holds the image operations and policies).
"""

import math

import tensorflow as tf

from cnnx.data import autoaugment, wide_augment
from cnnx.data.pp import PPContext, decode, op, op_seed, resize

# AlexNet's PCA of ImageNet RGB pixels (in [0, 1]), as used by fb.resnet.torch and timm.
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def _image(f, ctx: PPContext, dtype=tf.float32):
    """The example's image with its channel count made static (crops can lose it)."""
    image = tf.cast(f["image"], dtype) if dtype is not None else f["image"]
    image.set_shape([None, None, ctx.channels])
    return image


def _uniform(seed, lo, hi, shape=()):
    return tf.random.stateless_uniform(shape, seed, minval=lo, maxval=hi)


@op("resnet_scale")
def resnet_scale(ctx: PPContext, min: float = 256 / 224, max: float = 480 / 224):
    """Scale augmentation of He et al. 2015 §3.4: resize the shorter side to a random length
    in [min, max] × image_size (256-480 px for 224 crops), then take a random square crop."""
    lo, hi = round(min * ctx.image_size), round(max * ctx.image_size)

    def fn(f):
        image = decode(f["image"], ctx.channels)
        seed = op_seed(f, 10)
        short = tf.random.stateless_uniform(
            (), tf.random.experimental.stateless_fold_in(seed, 0), lo, hi + 1, dtype=tf.int32
        )
        h = tf.cast(tf.shape(image)[0], tf.float32)
        w = tf.cast(tf.shape(image)[1], tf.float32)
        scale = tf.cast(short, tf.float32) / tf.minimum(h, w)
        new = tf.maximum(tf.cast(tf.round(tf.stack([h * scale, w * scale])), tf.int32), short)
        image = resize(image, new)
        size = tf.stack([ctx.image_size, ctx.image_size, tf.shape(image)[-1]])
        crop_seed = tf.random.experimental.stateless_fold_in(seed, 1)
        image = tf.image.stateless_random_crop(image, size, seed=crop_seed)
        return {**f, "image": image}

    return fn


def _grayscale(image):
    """Luma of an RGB float image (ITU-R 601, as PIL and torchvision); gray stays gray."""
    if image.shape[-1] == 3:
        return tf.image.rgb_to_grayscale(image)
    return image


@op("color_jitter")
def color_jitter(
    ctx: PPContext, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.0, random_order=True
):
    """torchvision's ColorJitter: brightness, contrast and saturation factors uniform in
    [1 - v, 1 + v] and a hue shift uniform in [-hue, hue] (fraction of the colour wheel),
    applied in a random order (`random_order`) on 0-255 images. Saturation and hue are skipped
    for grayscale images."""
    rgb = ctx.channels == 3

    def fn(f):
        image = _image(f, ctx) / 255.0
        seed = op_seed(f, 11)
        sub = [tf.random.experimental.stateless_fold_in(seed, i) for i in range(5)]

        def adjust_brightness(x):
            return x * _uniform(sub[0], max(0.0, 1 - brightness), 1 + brightness)

        def adjust_contrast(x):
            mean = tf.reduce_mean(_grayscale(x))
            return (x - mean) * _uniform(sub[1], max(0.0, 1 - contrast), 1 + contrast) + mean

        def adjust_saturation(x):
            gray = _grayscale(x)
            return (x - gray) * _uniform(sub[2], max(0.0, 1 - saturation), 1 + saturation) + gray

        def adjust_hue(x):
            return tf.image.adjust_hue(x, _uniform(sub[3], -hue, hue))

        steps = []
        if brightness:
            steps.append(adjust_brightness)
        if contrast:
            steps.append(adjust_contrast)
        if saturation and rgb:
            steps.append(adjust_saturation)
        if hue and rgb:
            steps.append(adjust_hue)
        if not steps:
            return f
        if random_order and len(steps) > 1:
            # A random permutation from a constant table; slot j runs op perm[j] through a
            # switch (len(steps)² op instances in the graph, not len(steps)!·len(steps)).
            perms = _permutations(len(steps))
            index = tf.random.stateless_uniform((), sub[4], 0, len(perms), dtype=tf.int32)
            order = tf.gather(tf.constant(perms, tf.int32), index)
            for j in range(len(steps)):
                image = tf.switch_case(order[j], [lambda s=s, x=image: s(x) for s in steps])
                image = tf.clip_by_value(image, 0.0, 1.0)
        else:
            for step in steps:
                image = tf.clip_by_value(step(image), 0.0, 1.0)
        return {**f, "image": image * 255.0}

    return fn


def _permutations(n: int) -> list[tuple[int, ...]]:
    if n == 1:
        return [(0,)]
    return [
        (i, *[j if j < i else j + 1 for j in p]) for i in range(n) for p in _permutations(n - 1)
    ]


@op("lighting")
def lighting(ctx: PPContext, alphastd: float = 0.1):
    """AlexNet's PCA colour augmentation (Krizhevsky et al. 2012 §4.1): adds
    eigvec · (α ⊙ eigval) with α ~ N(0, alphastd²) to every pixel (ImageNet PCA)."""
    if ctx.channels != 3:
        raise ValueError("lighting needs RGB images (data.channels == 3)")
    eigval = tf.constant(IMAGENET_PCA_EIGVAL, tf.float32)
    eigvec = tf.constant(IMAGENET_PCA_EIGVEC, tf.float32)

    def fn(f):
        image = _image(f, ctx)
        alpha = tf.random.stateless_normal((3,), op_seed(f, 12), stddev=alphastd)
        rgb = tf.linalg.matvec(eigvec, alpha * eigval) * 255.0
        return {**f, "image": tf.clip_by_value(image + rgb, 0.0, 255.0)}

    return fn


def _box_mask(h, w, top, left, bh, bw):
    ys = tf.range(h)[:, None]
    xs = tf.range(w)[None, :]
    inside = (ys >= top) & (ys < top + bh) & (xs >= left) & (xs < left + bw)
    return tf.cast(inside, tf.float32)[:, :, None]


@op("cutout")
def cutout(ctx: PPContext, size: float = 0.5, fill=None):
    """Cutout (DeVries & Taylor 2017): a square of side `size` (pixels if > 1, else a
    fraction of the image side) centred anywhere, clipped at the borders, filled with the
    dataset mean (`fill` on the 0-255 scale overrides), i.e. zero after `normalize`."""
    mean = [255.0 * m for m in ctx.mean] if fill is None else fill

    def fn(f):
        image = _image(f, ctx)
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        side = (
            tf.constant(int(size), tf.int32)
            if size > 1
            else tf.cast(tf.round(size * tf.cast(tf.minimum(h, w), tf.float32)), tf.int32)
        )
        seed = op_seed(f, 13)
        cy = tf.random.stateless_uniform((), seed, 0, h, dtype=tf.int32)
        cx = tf.random.stateless_uniform(
            (), tf.random.experimental.stateless_fold_in(seed, 1), 0, w, dtype=tf.int32
        )
        mask = _box_mask(h, w, cy - side // 2, cx - side // 2, side, side)
        value = tf.broadcast_to(tf.constant(mean, tf.float32), tf.shape(image[:1, :1]))
        return {**f, "image": image * (1 - mask) + value * mask}

    return fn


@op("random_erasing")
def random_erasing(
    ctx: PPContext, prob: float = 0.25, scale=(0.02, 1 / 3), ratio=(0.3, 3.3), attempts=10
):
    """Random erasing (Zhong et al. 2017) with timm's semantics (`mode='pixel'`, count 1):
    with probability `prob`, up to `attempts` boxes of area fraction in `scale` and log-uniform
    aspect ratio in `ratio` are drawn and the first that fits is filled with N(0, 1) noise per
    pixel. Runs on normalised images (after `normalize`)."""

    def fn(f):
        image = _image(f, ctx)
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
        seed = op_seed(f, 14)
        s = [tf.random.experimental.stateless_fold_in(seed, i) for i in range(6)]
        area = _uniform(s[0], scale[0], scale[1], (attempts,)) * hf * wf
        aspect = tf.exp(_uniform(s[1], math.log(ratio[0]), math.log(ratio[1]), (attempts,)))
        bh = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32)
        bw = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32)
        fits = (bh < h) & (bw < w)
        first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
        bh, bw = bh[first], bw[first]
        top = tf.cast(_uniform(s[2], 0.0, 1.0) * tf.cast(h - bh + 1, tf.float32), tf.int32)
        left = tf.cast(_uniform(s[3], 0.0, 1.0) * tf.cast(w - bw + 1, tf.float32), tf.int32)
        erase = tf.reduce_any(fits) & (_uniform(s[4], 0.0, 1.0) < prob)
        mask = _box_mask(h, w, top, left, bh, bw) * tf.cast(erase, tf.float32)
        noise = tf.random.stateless_normal(tf.shape(image), s[5])
        return {**f, "image": image * (1 - mask) + noise * mask}

    return fn


def _as_uint8(image):
    if image.dtype == tf.uint8:
        return image
    return tf.cast(tf.clip_by_value(tf.round(tf.cast(image, tf.float32)), 0, 255), tf.uint8)


@op("autoaugment")
def autoaugment_op(ctx: PPContext, policy: str = "imagenet"):
    """AutoAugment (Cubuk et al. 2018) with the ImageNet policy: one of its 25 sub-policies
    per example, each two (op, probability, magnitude) steps. Output is uint8."""
    if policy != "imagenet":
        raise ValueError(f"autoaugment policy {policy!r}: only 'imagenet' is implemented")

    def fn(f):
        image = autoaugment.auto_augment(_as_uint8(_image(f, ctx, None)), op_seed(f, 15))
        return {**f, "image": image}

    return fn


@op("randaugment")
def randaugment_op(
    ctx: PPContext,
    num_ops: int = 2,
    magnitude: float = 9.0,
    magnitude_std: float = 0.0,
    prob: float = 1.0,
):
    """RandAugment (Cubuk et al. 2019): `num_ops` ops drawn uniformly (with replacement) from
    timm's 15 'increasing' ops, each at `magnitude` (0-10) plus N(0, magnitude_std) noise,
    each applied with probability `prob`. The paper is prob=1, magnitude_std=0; DeiT and
    ConvNeXt use timm's 'rand-m9-mstd0.5-inc1': prob=0.5, magnitude_std=0.5."""

    def fn(f):
        image = autoaugment.rand_augment(
            _as_uint8(_image(f, ctx, None)),
            op_seed(f, 16),
            num_ops=num_ops,
            magnitude=magnitude,
            magnitude_std=magnitude_std,
            prob=prob,
        )
        return {**f, "image": image}

    return fn


@op("trivialaugment_wide")
def trivialaugment_wide_op(ctx: PPContext, num_bins: int = 31):
    """TrivialAugmentWide (Müller & Hutter 2021; torchvision's, the ResNet-50 v2 recipe's
    `ta_wide`): one op of 14 at one of `num_bins` magnitudes per example. Output is uint8."""

    def fn(f):
        image = wide_augment.trivial_augment_wide(
            _as_uint8(_image(f, ctx, None)), op_seed(f, 17), num_bins=num_bins
        )
        return {**f, "image": image}

    return fn


@op("augmix")
def augmix_op(
    ctx: PPContext,
    severity: int = 3,
    width: int = 3,
    depth: int = -1,
    alpha: float = 1.0,
    all_ops: bool = True,
):
    """AugMix (Hendrycks et al. 2020) as torchvision's `transforms.AugMix`, without the JSD
    loss: `width` chains of `depth` ops (1-3 when -1) at magnitude bins below `severity`,
    Dirichlet(`alpha`)-mixed and blended with the original. Needs a fixed image size (after
    a crop or resize). Output is uint8."""

    def fn(f):
        image = _as_uint8(_image(f, ctx, None))
        image.set_shape([ctx.image_size, ctx.image_size, ctx.channels])
        out = wide_augment.augmix(
            image,
            op_seed(f, 18),
            severity=severity,
            width=width,
            depth=depth,
            alpha=alpha,
            all_ops=all_ops,
        )
        return {**f, "image": out}

    return fn
