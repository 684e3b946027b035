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

from cnnx.accuracy import TOP5_MIN_CLASSES, topk_hits


def masked_sums(log_probs, labels, mask, *, scores=None, confusion: bool = True) -> dict:
    """Sums over the real (mask 1) examples of a batch, to be added up over batches.

    Args:
      log_probs: (B, K) log-probabilities (the loss is their negative at the label).
      labels: (B,) integer labels in [0, K).
      mask: (B,) 1 for real examples, 0 for padding.
      scores: (B, K) values whose order is the prediction (default `log_probs`). A single
        model passes its logits, so ties are broken as `argmax(logits)` breaks them (two
        logits a few ulps apart can round to one log-probability).
      confusion: also sum the (K, K) confusion matrix (rows true, columns predicted).

    Returns:
      'loss' (summed negative log-likelihood), 'top1', 'top5', 'count' (float32 scalars),
      'support' and 'correct' ((K,) int32 examples and top-1 hits per true class), and
      'confusion' ((K, K) int32) when asked for.
    """
    k = log_probs.shape[-1]
    mask = mask.astype(jnp.float32)
    hits, top = topk_hits(log_probs if scores is None else scores, labels, 5)
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


def top5_note(num_classes: int) -> str | None:
    """Why top-5 is not reported for `num_classes` classes, or None when it is."""
    if num_classes >= TOP5_MIN_CLASSES:
        return None
    return (
        f"top-5 not reported: {num_classes} classes, and top-5 of {TOP5_MIN_CLASSES - 1} "
        "classes or fewer is always 100%"
    )


def summarize(totals: dict) -> dict:
    """Metrics from summed `masked_sums` (host values).

    Returns:
      'eval/top1', 'eval/top5' (in %; top-5 only for 6 classes or more), 'eval/loss' (mean
      negative log-likelihood), 'eval/examples', 'num_classes', 'per_class_top1' (in %, None
      for a class without examples), 'confusion' (lists) when summed, and 'notes' (a list of
      sentences) when top-5 is left out.
    """
    n = float(totals["count"])
    support = np.asarray(totals["support"])
    correct = np.asarray(totals["correct"])
    k = len(support)
    out = {
        "eval/top1": 100.0 * float(totals["top1"]) / n,
        "eval/top5": 100.0 * float(totals["top5"]) / n,
        "eval/loss": float(totals["loss"]) / n,
        "eval/examples": int(n),
        "num_classes": k,
        "per_class_top1": [
            100.0 * float(c) / float(s) if s else None for c, s in zip(correct, support)
        ],
    }
    if (note := top5_note(k)) is not None:
        del out["eval/top5"]
        out["notes"] = [note]
    if "confusion" in totals:
        out["confusion"] = np.asarray(totals["confusion"]).tolist()
    return out


def format_metrics(results: dict, prefix: str = "eval") -> str:
    """'top-1 99.72%  top-5 100.00%  loss 0.0144' of `results` ('<prefix>/top1', ...); a run
    without '<prefix>/top5' (fewer than 6 classes) says 'top-5 n/a (under 6 classes)'."""
    top5 = results.get(f"{prefix}/top5")
    shown = f"{top5:.2f}%" if top5 is not None else f"n/a (under {TOP5_MIN_CLASSES} classes)"
    return (
        f"top-1 {results[f'{prefix}/top1']:.2f}%  top-5 {shown}  "
        f"loss {results[f'{prefix}/loss']:.4f}"
    )
