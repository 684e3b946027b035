"""Classification losses, per example and in float32 whatever the compute dtype."""

import jax
import jax.numpy as jnp
import optax


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
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def soft_cross_entropy(logits, targets):
    """Per-example softmax cross entropy against soft targets (Mixup/CutMix), in float32.

    Args:
      logits: [batch, num_classes], any float dtype.
      targets: [batch, num_classes] probabilities (rows sum to 1).

    Returns:
      [batch] float32 losses in nats.
    """
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets.astype(jnp.float32))
