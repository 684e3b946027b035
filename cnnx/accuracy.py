"""Top-k accuracy: the one definition of a hit that training's metrics (`cnnx.train.steps`)
and evaluation (`cnnx.evaluate.metrics`) share.

The label is a top-k hit when it is among the k highest scores; ties go to the lower class
index (`jax.lax.top_k`, as `argmax`), so top-1 is the hit of `argmax(scores)`.
"""

import jax
import jax.numpy as jnp

# Top-5 of a problem with 5 classes or fewer is 100% whatever the model: not reported there.
TOP5_MIN_CLASSES = 6


def topk_hits(scores, labels, k: int = 5):
    """Where each label ranks among the k highest scores.

    Args:
      scores: (B, K) values whose order is the prediction (logits or log-probabilities).
      labels: (B,) integer labels in [0, K).
      k: how many of the highest scores to look at (capped at K).

    Returns:
      (hits, top): hits (B, min(k, K)) bool, `hits[:, j]` where the label has the j-th
      highest score (top-n hit: `hits[:, :n].any(-1)`; top-1: `hits[:, 0]`), and top
      (B, min(k, K)) int32, the classes of the k highest scores, highest first.
    """
    top = jax.lax.top_k(scores, min(k, scores.shape[-1]))[1]
    return top == labels[:, None], top


def topk_accuracy(scores, labels, k: int):
    """Percentage of the batch whose label is among the k highest scores (float32 scalar)."""
    hits, _ = topk_hits(scores, labels, k)
    return 100.0 * jnp.mean(jnp.any(hits, axis=-1).astype(jnp.float32))
