"""Classification metrics as masked sums: one jitted reduction per batch, added up over batches.

A batch padded to a fixed size carries a mask (1 real, 0 padding); `masked_sums` turns its
log-probabilities into sums over the real examples (loss, top-1, top-5, per-class counts,
confusion matrix), computed on device. Summed over an epoch they give the metrics
(`summarize`) exactly, whatever the batch size, device count or number of processes, and
only these few numbers ever leave the devices.
"""

import jax
import jax.numpy as jnp
import numpy as np


def masked_sums(log_probs, labels, mask, *, confusion: bool = True) -> dict:
    """Sums over the real (mask 1) examples of a batch, to be added up over batches.

    Args:
      log_probs: (B, K) log-probabilities.
      labels: (B,) integer labels in [0, K).
      mask: (B,) 1 for real examples, 0 for padding.
      confusion: also sum the (K, K) confusion matrix (rows true, columns predicted).

    Returns:
      'loss' (summed negative log-likelihood), 'top1', 'top5', 'count' (float32 scalars),
      'support' and 'correct' ((K,) int32 examples and top-1 hits per true class), and
      'confusion' ((K, K) int32) when asked for.
    """
    k = log_probs.shape[-1]
    mask = mask.astype(jnp.float32)
    top = jax.lax.top_k(log_probs, min(5, k))[1]
    hits = top == labels[:, None]
    nll = -jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    true = jax.nn.one_hot(labels, k, dtype=jnp.float32) * mask[:, None]
    predicted = jax.nn.one_hot(top[:, 0], k, dtype=jnp.float32)
    sums = {
        "loss": jnp.sum(nll * mask),
        "top1": jnp.sum(hits[:, 0] * mask),
        "top5": jnp.sum(jnp.any(hits, axis=-1) * mask),
        "count": jnp.sum(mask),
        # Per-batch counts are small exact integers in float32; int32 keeps the totals exact.
        "support": jnp.sum(true, axis=0).astype(jnp.int32),
        "correct": jnp.sum(true * predicted, axis=0).astype(jnp.int32),
    }
    if confusion:
        cm = jnp.einsum("bi,bj->ij", true, predicted, precision=jax.lax.Precision.HIGHEST)
        sums["confusion"] = cm.astype(jnp.int32)
    return sums


def summarize(totals: dict) -> dict:
    """Metrics from summed `masked_sums` (host values): top-1/top-5 in %, mean loss, per class."""
    n = float(totals["count"])
    support = np.asarray(totals["support"])
    correct = np.asarray(totals["correct"])
    out = {
        "eval/top1": 100.0 * float(totals["top1"]) / n,
        "eval/top5": 100.0 * float(totals["top5"]) / n,
        "eval/loss": float(totals["loss"]) / n,
        "eval/examples": int(n),
        "per_class_top1": [
            100.0 * float(c) / float(s) if s else None for c, s in zip(correct, support)
        ],
    }
    if "confusion" in totals:
        out["confusion"] = np.asarray(totals["confusion"]).tolist()
    return out
