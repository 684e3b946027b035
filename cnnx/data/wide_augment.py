"""TrivialAugmentWide and AugMix as torchvision implements them, on uint8 images in TF graph code.

TrivialAugment (Müller & Hutter 2021, the 'wide' space): per image one op drawn uniformly
from 14, at a magnitude drawn uniformly from its 31 bins, signed ops negated half the time.
It is the augmentation of torchvision's ResNet-50 v2 recipe (`--auto-augment ta_wide`).
AugMix (Hendrycks et al. 2020), torchvision's `transforms.AugMix` (no JSD loss): `width`
chains of 1-3 random ops at a magnitude bin below `severity`, mixed with Dirichlet(α)
weights, then blended with the original image by a Beta(α, α) weight.

The op tables are torchvision's `_augmentation_space` (tests/data/test_wide_augment.py
compares them); the image ops are `cnnx.data.autoaugment`'s PIL-exact ones, with
torchvision's black fill and nearest-neighbour sampling for the geometric ops. Randomness is
stateless, folded from the example's seed.
"""

import tensorflow as tf

from cnnx.data import autoaugment as aa

_fold = tf.random.experimental.stateless_fold_in
_GEOMETRIC = {"fill": 0.0, "interpolation": "NEAREST"}  # torchvision's defaults for both


def _linspace(lo: float, hi: float, n: int) -> tuple[float, ...]:
    return tuple(lo + (hi - lo) * i / (n - 1) for i in range(n))


def _posterize_bits(n: int, most: int, span: int) -> tuple[float, ...]:
    # torchvision: most - (arange(n) / ((n - 1) / span)).round(); halves round to even.
    return tuple(float(most - round(i / ((n - 1) / span))) for i in range(n))


def trivial_augment_space(num_bins: int = 31) -> dict[str, tuple[tuple[float, ...], bool]]:
    """torchvision `TrivialAugmentWide._augmentation_space`: op -> (magnitudes, signed); an
    op without magnitudes has ()."""
    return {
        "Identity": ((), False),
        "ShearX": (_linspace(0.0, 0.99, num_bins), True),
        "ShearY": (_linspace(0.0, 0.99, num_bins), True),
        "TranslateX": (_linspace(0.0, 32.0, num_bins), True),
        "TranslateY": (_linspace(0.0, 32.0, num_bins), True),
        "Rotate": (_linspace(0.0, 135.0, num_bins), True),
        "Brightness": (_linspace(0.0, 0.99, num_bins), True),
        "Color": (_linspace(0.0, 0.99, num_bins), True),
        "Contrast": (_linspace(0.0, 0.99, num_bins), True),
        "Sharpness": (_linspace(0.0, 0.99, num_bins), True),
        "Posterize": (_posterize_bits(num_bins, 8, 6), False),
        "Solarize": (_linspace(255.0, 0.0, num_bins), False),
        "AutoContrast": ((), False),
        "Equalize": ((), False),
    }


def augmix_space(
    num_bins: int, height: int, width: int, all_ops: bool = True
) -> dict[str, tuple[tuple[float, ...], bool]]:
    """torchvision `AugMix._augmentation_space(num_bins, (height, width))`."""
    space = {
        "ShearX": (_linspace(0.0, 0.3, num_bins), True),
        "ShearY": (_linspace(0.0, 0.3, num_bins), True),
        "TranslateX": (_linspace(0.0, width / 3.0, num_bins), True),
        "TranslateY": (_linspace(0.0, height / 3.0, num_bins), True),
        "Rotate": (_linspace(0.0, 30.0, num_bins), True),
        "Posterize": (_posterize_bits(num_bins, 4, 4), False),
        "Solarize": (_linspace(255.0, 0.0, num_bins), False),
        "AutoContrast": ((), False),
        "Equalize": ((), False),
    }
    if all_ops:
        for name in ("Brightness", "Color", "Contrast", "Sharpness"):
            space[name] = (_linspace(0.0, 0.9, num_bins), True)
    return space


def apply_magnitude(name: str, image, magnitude):
    """torchvision's `_apply_op(image, name, magnitude)` on a uint8 HWC image.

    Args:
      name: an op of the spaces above, or 'Invert'.
      image: uint8 (H, W, C).
      magnitude: float scalar: shear factor, pixels, degrees, 1 + enhancement factor offset,
        bits, threshold.

    Returns:
      uint8 (H, W, C).
    """
    m = tf.cast(magnitude, tf.float32)
    if name == "Identity":
        return image
    # Shears about the image's corner (torchvision's center=[0, 0]), half a pixel off the
    # first pixel's centre: output (x, y) reads input (x + m·(y + 1/2), y).
    if name == "ShearX":
        matrix = tf.stack([1.0, m, 0.5 * m, 0.0, 1.0, 0.0, 0.0, 0.0])
        return aa.transform(image, matrix, **_GEOMETRIC)
    if name == "ShearY":
        matrix = tf.stack([1.0, 0.0, 0.0, m, 1.0, 0.5 * m, 0.0, 0.0])
        return aa.transform(image, matrix, **_GEOMETRIC)
    if name in ("TranslateX", "TranslateY"):
        pixels = tf.cast(tf.cast(m, tf.int32), tf.float32)  # torchvision: int(magnitude)
        shift = aa.translate_x if name == "TranslateX" else aa.translate_y
        return shift(image, pixels, **_GEOMETRIC)
    if name == "Rotate":
        return aa.rotate(image, m, **_GEOMETRIC)
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        fn = {"Brightness": aa.brightness, "Color": aa.color, "Contrast": aa.contrast}
        return fn.get(name, aa.sharpness)(image, 1.0 + m)
    if name == "Posterize":
        return aa.posterize(image, tf.cast(m, tf.int32))
    if name == "Solarize":
        return aa.solarize(image, m)
    if name == "AutoContrast":
        return aa.autocontrast(image)
    if name == "Equalize":
        return aa.equalize(image)
    if name == "Invert":
        return aa.invert(image)
    raise ValueError(f"unknown augmentation op {name!r}")


def _random_op(image, seed, space, bins: int):
    """One op of `space` drawn uniformly, at one of its first `bins` magnitudes drawn
    uniformly, negated half the time when signed (torchvision's draw)."""
    names = tuple(space)
    table = [list(space[n][0][:bins]) or [0.0] * bins for n in names]
    signed = [space[n][1] for n in names]
    index = tf.random.stateless_uniform((), _fold(seed, 0), 0, len(names), dtype=tf.int32)
    which = tf.random.stateless_uniform((), _fold(seed, 1), 0, bins, dtype=tf.int32)
    flip = tf.random.stateless_uniform((), _fold(seed, 2)) < 0.5
    magnitude = tf.gather(tf.gather(tf.constant(table, tf.float32), index), which)
    magnitude = tf.where(tf.gather(signed, index) & flip, -magnitude, magnitude)
    branches = [lambda n=n: apply_magnitude(n, image, magnitude) for n in names]
    out = tf.switch_case(index, branches)
    out.set_shape(image.shape)
    return out


def trivial_augment_wide(image, seed, num_bins: int = 31):
    """TrivialAugmentWide on a uint8 HWC image (torchvision `transforms.TrivialAugmentWide`).

    Args:
      image: uint8 (H, W, C).
      seed: a stateless seed, shape (2,).
      num_bins: magnitude bins of the space (31 as torchvision).

    Returns:
      uint8 (H, W, C).
    """
    return _random_op(image, seed, trivial_augment_space(num_bins), num_bins)


def _dirichlet(seed, alpha: float, k: int):
    gamma = tf.random.stateless_gamma((k,), seed, alpha)
    return gamma / tf.reduce_sum(gamma)


def augmix(
    image,
    seed,
    *,
    severity: int = 3,
    width: int = 3,
    depth: int = -1,
    alpha: float = 1.0,
    all_ops: bool = True,
    space=None,
):
    """AugMix on a uint8 HWC image (torchvision `transforms.AugMix`, defaults included).

    mix = m·x + (1 - m)·Σ_i w_i·chain_i(x), m ~ Beta(α, α), w ~ Dirichlet(α, ..., α); each
    chain applies `depth` ops (1-3 at random when depth <= 0), each drawn as in
    `trivial_augment_wide` from `augmix_space` (11 bins) at a bin below `severity`. The
    mix is truncated to uint8 as torchvision's `.to(uint8)`.

    Args:
      image: uint8 (H, W, C) with a static shape.
      seed: a stateless seed, shape (2,).
      severity: magnitude bins used, 1-10.
      width: chains mixed.
      depth: ops per chain; <= 0 draws 1-3 per chain.
      alpha: the Dirichlet and Beta concentration.
      all_ops: include Brightness, Color, Contrast and Sharpness.
      space: op -> (magnitudes, signed) replacing `augmix_space` (tests).

    Returns:
      uint8 (H, W, C).
    """
    h, w = int(image.shape[0]), int(image.shape[1])
    space = space or augmix_space(11, h, w, all_ops)
    m = _dirichlet(_fold(seed, 0), alpha, 2)
    weights = _dirichlet(_fold(seed, 1), alpha, width) * m[1]
    mix = m[0] * tf.cast(image, tf.float32)
    for i in range(width):
        s = _fold(seed, 10 + i)
        ops = depth if depth > 0 else tf.random.stateless_uniform((), s, 1, 4, dtype=tf.int32)
        chain = image
        for d in range(depth if depth > 0 else 3):
            step = _fold(s, 1 + d)
            apply = lambda x=chain, step=step: _random_op(x, step, space, severity)  # noqa: E731
            chain = tf.cond(d < ops, apply, lambda x=chain: x) if depth <= 0 else apply()
            chain.set_shape(image.shape)
        mix += weights[i] * tf.cast(chain, tf.float32)
    return tf.cast(tf.clip_by_value(tf.floor(mix), 0.0, 255.0), tf.uint8)
