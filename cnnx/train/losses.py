"""Classification losses by name (`train.loss`), per example and in float32 whatever the
compute dtype.

A training loss is `fn(logits, targets, context) -> (B,) float32 losses`:
  logits   (B, K), any float dtype (upcast to float32);
  targets  (B, K) soft targets: the one-hot labels smoothed by `train.label_smoothing` and
           mixed by Mixup / CutMix (`cnnx.data.mixing.mix_batch`), rows summing to 1;
  context  a dict of per-example arrays the train step passes along: 'labels' (B,), the
           integer labels before mixing. A loss that needs more (a distillation loss: the
           teacher's logits of the same images) reads it from here, and the step adds it.
`LOSSES` maps the config's `train.loss` to these; the train step averages them over the
batch and adds the auxiliary classifiers' losses (GoogLeNet, Inception v3), weighted.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax


def softmax_cross_entropy(logits, targets, context=None):
    """Per-example softmax cross entropy against soft targets (`train.loss='softmax_xent'`).

    With label smoothing in the targets this is Szegedy et al. 2016 (§7); with mixed targets,
    Mixup's and CutMix's loss.

    Args:
      logits: (B, K), any float dtype.
      targets: (B, K) probabilities (rows sum to 1).
      context: unused.

    Returns:
      (B,) float32 losses in nats: -sum_k targets_k · log softmax(logits)_k.
    """
    del context
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets.astype(jnp.float32))


def sigmoid_cross_entropy(logits, targets, context=None):
    """Per-example binary cross entropy of each class's sigmoid, averaged over the classes
    (`train.loss='sigmoid_xent'`).

    timm's `BinaryCrossEntropy` (timm/loss/binary_cross_entropy.py, the loss of Wightman et
    al. 2021, "ResNet strikes back") with its defaults, `reduction='mean'` over batch and
    classes and no target threshold, on the targets timm's Mixup gives it: one-hot labels
    smoothed to (1 - ε + ε/K, ε/K) and mixed. Each class is a separate yes/no question
    (Beyer et al. 2020, "Are we done with ImageNet?"), so the targets need not sum to 1.

    Args:
      logits: (B, K), any float dtype.
      targets: (B, K) per-class target probabilities in [0, 1].
      context: unused.

    Returns:
      (B,) float32: mean over k of -[t_k · log σ(z_k) + (1 - t_k) · log(1 - σ(z_k))].
    """
    del context
    bce = optax.sigmoid_binary_cross_entropy(
        logits.astype(jnp.float32), targets.astype(jnp.float32)
    )
    return jnp.mean(bce, axis=-1)


def threshold_targets(targets, threshold: float):
    """Targets above `threshold` become 1, the others 0 (`train.bce_target_threshold`).

    timm's `BinaryCrossEntropy(target_threshold=...)`, used by "ResNet strikes back" (0.2):
    after mixing, a class present in the image with weight above the threshold is a plain
    yes, smoothing's small off-values a plain no.

    Args:
      targets: (B, K) soft targets.
      threshold: in [0, 1).

    Returns:
      (B, K) of 0s and 1s, in the targets' dtype.
    """
    return (targets > threshold).astype(targets.dtype)


# `train.loss` -> fn(logits, targets, context) -> (B,) float32. The names are big_vision's;
# the config schema lists them (cnnx.config_schema.LOSS_NAMES).
LOSSES: dict[str, Callable[..., jax.Array]] = {
    "softmax_xent": softmax_cross_entropy,
    "sigmoid_xent": sigmoid_cross_entropy,
}


def cross_entropy(logits, labels, num_classes: int, label_smoothing: float = 0.0):
    """Per-example softmax cross entropy against integer labels, with label smoothing.

    Args:
      logits: [batch, num_classes], any float dtype (upcast to float32).
      labels: [batch] integers in [0, num_classes).
      num_classes: width of the one-hot targets.
      label_smoothing: ε of Szegedy et al. 2015 (§7): targets (1 - ε)·one_hot + ε / classes.

    Returns:
      [batch] float32 losses in nats.
    """
    targets = jax.nn.one_hot(labels, num_classes)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return softmax_cross_entropy(logits, targets)
