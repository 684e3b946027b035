"""Mixup and CutMix on device, inside the train step (timm `Mixup` semantics, batch mode).

Mixup (Zhang et al. 2018): x = λ·x_i + (1-λ)·x_j, y = λ·y_i + (1-λ)·y_j with λ ~ Beta(α, α).
CutMix (Yun et al. 2019): a box of area (1-λ)·H·W from x_j is pasted into x_i; the box is
clipped at the borders, so the label weight is recomputed from the box actually pasted.
As in timm's default 'batch' mode, one λ is drawn per batch and example i is paired with
example B-1-i (the batch reversed). With both α > 0, CutMix is chosen with probability
`switch_prob`; the whole batch is mixed with probability `prob`.

Everything is jit-friendly: the choices are `jnp.where`s on random draws and the CutMix box is
a mask built from iotas, so shapes never depend on the draw and the step never recompiles.
"""

import jax
import jax.numpy as jnp


def soft_targets(labels, num_classes: int, smoothing: float = 0.0):
    """One-hot targets with label smoothing (timm: off = s / K, on = 1 - s + s / K)."""
    off = smoothing / num_classes
    return jax.nn.one_hot(labels, num_classes) * (1.0 - smoothing) + off


def cutmix_box(rng, lam, height: int, width: int):
    """A box of area ≈ (1-λ)·H·W centred uniformly at random, clipped to the image.

    Returns:
      (mask (H, W) float32 with 1 inside the box, the box's actual area fraction).
    """
    ry, rx = jax.random.split(rng)
    cut = jnp.sqrt(1.0 - lam)
    ch, cw = (cut * height).astype(jnp.int32), (cut * width).astype(jnp.int32)
    cy = jax.random.randint(ry, (), 0, height)
    cx = jax.random.randint(rx, (), 0, width)
    y0, y1 = jnp.clip(cy - ch // 2, 0, height), jnp.clip(cy + ch // 2, 0, height)
    x0, x1 = jnp.clip(cx - cw // 2, 0, width), jnp.clip(cx + cw // 2, 0, width)
    ys = jnp.arange(height)[:, None]
    xs = jnp.arange(width)[None, :]
    mask = ((ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)).astype(jnp.float32)
    return mask, (y1 - y0) * (x1 - x0) / (height * width)


def mix_batch(
    rng: jax.Array,
    images: jax.Array,
    labels: jax.Array,
    num_classes: int,
    *,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    label_smoothing: float = 0.0,
):
    """Mixes a batch with Mixup or CutMix; returns (images, soft targets (B, K), λ).

    Args:
      rng: a key (the train step folds it from the step's key).
      images: (B, H, W, C) float images (normalised; any dtype).
      labels: (B,) integer labels.
      num_classes: K.
      mixup_alpha, cutmix_alpha: Beta parameters; 0 disables that method.
      prob: probability that the batch is mixed at all.
      switch_prob: probability of CutMix rather than Mixup when both are enabled.
      label_smoothing: applied to both targets before mixing (as timm).

    Returns:
      Mixed images (same dtype), targets whose rows sum to 1, and the label weight λ of the
      unpermuted examples (1.0 when nothing was mixed).
    """
    targets = soft_targets(labels, num_classes, label_smoothing)
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return images, targets, jnp.ones((), jnp.float32)
    r_apply, r_switch, r_mix, r_cut, r_box = jax.random.split(rng, 5)
    apply = jax.random.uniform(r_apply) < prob
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = jax.random.uniform(r_switch) < switch_prob
    else:
        use_cutmix = jnp.asarray(cutmix_alpha > 0)
    lam_mix = jax.random.beta(r_mix, mixup_alpha, mixup_alpha) if mixup_alpha > 0 else jnp.ones(())
    lam_cut = (
        jax.random.beta(r_cut, cutmix_alpha, cutmix_alpha) if cutmix_alpha > 0 else jnp.ones(())
    )
    _, h, w, _ = images.shape
    box, area = cutmix_box(r_box, lam_cut, h, w)
    # Per-pixel weight of the original image: λ everywhere (mixup) or 0 inside the box.
    weight = jnp.where(use_cutmix, 1.0 - box, lam_mix * jnp.ones_like(box))
    lam = jnp.where(use_cutmix, 1.0 - area, lam_mix)
    weight = jnp.where(apply, weight, 1.0)
    lam = jnp.where(apply, lam, 1.0).astype(jnp.float32)
    flipped = images[::-1]
    wpix = weight[None, :, :, None].astype(images.dtype)
    mixed = wpix * images + (1 - wpix) * flipped
    targets = lam * targets + (1.0 - lam) * targets[::-1]
    return mixed.astype(images.dtype), targets, lam
