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

# Confidence bins of the expected calibration error: 15 equal-width bins (Guo et al., "On
# Calibration of Modern Neural Networks", 2017).
ECE_BINS = 15


def calibration_sums(log_probs, predicted, hit, mask) -> dict:
    """Per-bin sums of the expected calibration error (ECE): bin b holds the examples whose
    confidence (the probability of the predicted class) is in (b/15, (b+1)/15].

    Args:
      log_probs: (B, K) log-probabilities.
      predicted: (B,) the predicted classes.
      hit: (B,) 1.0 where the prediction is right.
      mask: (B,) float32, 1 for real examples.

    Returns:
      'ece_count', 'ece_confidence', 'ece_hits': (ECE_BINS,) float32 sums per bin.
    """
    confidence = jnp.exp(jnp.take_along_axis(log_probs, predicted[:, None], axis=-1)[:, 0])
    bins = jnp.clip(jnp.ceil(confidence * ECE_BINS).astype(jnp.int32) - 1, 0, ECE_BINS - 1)
    in_bin = jax.nn.one_hot(bins, ECE_BINS, dtype=jnp.float32) * mask[:, None]
    return {
        "ece_count": jnp.sum(in_bin, axis=0),
        "ece_confidence": confidence @ in_bin,
        "ece_hits": hit.astype(jnp.float32) @ in_bin,
    }


def expected_calibration_error(count, confidence, hits) -> float:
    """ECE in % from the per-bin sums: sum over bins of |hits_b - confidence_b| / N."""
    n = float(np.sum(count))
    return 100.0 * float(np.sum(np.abs(np.asarray(hits) - np.asarray(confidence)))) / n


def multi_label_sums(log_probs, label_sets, mask, *, scores=None) -> dict:
    """Sums of a batch whose images have label sets (ImageNet-ReaL): a prediction is right
    when it is in the image's set, and images with an empty set are left out (Beyer et al.,
    "Are we done with ImageNet?", 2020; timm's `--real-labels`).

    What is defined for label sets, and how:
      - top-1 / top-5: the first / any of the five highest scores in the set;
      - ECE: the confidence of the top-1 prediction against "it is in the set";
      - per-class top-1 of class c: over the images whose set holds c, the share whose
        top-1 prediction is in their set (an image with n labels counts in n classes, so
        the support-weighted mean of the per-class figures is not the top-1 as it is for
        single labels; for one-label sets both are the single-label figures).
    Not defined, so not summed: the loss / NLL (the likelihood of a label *set* under a
    softmax over exclusive classes has no standard form: the probability of the set's
    union, of each of its labels, or of the original label would each be another metric)
    and the confusion matrix (no single true class per image).

    Args:
      log_probs: (B, K) log-probabilities.
      label_sets: (B, K) 1 where the class is among the image's labels.
      mask: (B,) 1 for real examples, 0 for padding.
      scores: (B, K) values whose order is the prediction (default `log_probs`).

    Returns:
      'top1', 'top5', 'count' (images with labels), 'support' and 'correct' ((K,) int32:
      labelled images holding each class, and those of them whose top-1 is right) and the
      calibration sums.
    """
    label_sets = (label_sets > 0).astype(jnp.float32)
    mask = mask.astype(jnp.float32) * (jnp.sum(label_sets, axis=-1) > 0)
    k = log_probs.shape[-1]
    top = jax.lax.top_k(log_probs if scores is None else scores, min(5, k))[1]
    in_set = jnp.take_along_axis(label_sets, top, axis=-1) > 0  # (B, 5)
    holds = label_sets * mask[:, None]  # (B, K): the counted images' labels
    return {
        "top1": jnp.sum(in_set[:, 0] * mask),
        "top5": jnp.sum(jnp.any(in_set, axis=-1) * mask),
        "count": jnp.sum(mask),
        "support": jnp.sum(holds, axis=0).astype(jnp.int32),
        "correct": jnp.sum(in_set[:, :1] * holds, axis=0).astype(jnp.int32),
        **calibration_sums(log_probs, top[:, 0], in_set[:, 0], mask),
    }


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
      'support' and 'correct' ((K,) int32 examples and top-1 hits per true class), the
      calibration sums (`calibration_sums`), and 'confusion' ((K, K) int32) when asked for.
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
        **calibration_sums(log_probs, top[:, 0], hits[:, 0], mask),
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


def summarize(totals: dict, num_classes: int | None = None, prefix: str = "eval") -> dict:
    """Metrics from summed `masked_sums` or `multi_label_sums` (host values).

    Args:
      totals: the summed sums.
      num_classes: the logits' width (default: the length of the per-class sums).
      prefix: the evaluator's name, the metrics' prefix.

    Returns:
      '<prefix>/top1', '<prefix>/top5' (in %; top-5 only for 6 classes or more),
      '<prefix>/loss' and '<prefix>/nll' (mean negative log-likelihood; single labels only),
      '<prefix>/ece' (expected calibration error in %, 15 bins), '<prefix>/examples',
      'num_classes', 'per_class_top1' (in %, None for a class without examples; for label
      sets as `multi_label_sums` defines it), 'confusion' (lists) when summed, and 'notes'
      (a list of sentences) when top-5 is left out.
    """
    n = float(totals["count"])
    k = num_classes or len(totals["support"])
    out = {
        f"{prefix}/top1": 100.0 * float(totals["top1"]) / n,
        f"{prefix}/top5": 100.0 * float(totals["top5"]) / n,
    }
    if "loss" in totals:
        out[f"{prefix}/loss"] = out[f"{prefix}/nll"] = float(totals["loss"]) / n
    out[f"{prefix}/ece"] = expected_calibration_error(
        totals["ece_count"], totals["ece_confidence"], totals["ece_hits"]
    )
    out[f"{prefix}/examples"] = int(n)
    out["num_classes"] = k
    if "support" in totals:
        support, correct = np.asarray(totals["support"]), np.asarray(totals["correct"])
        out["per_class_top1"] = [
            100.0 * float(c) / float(s) if s else None for c, s in zip(correct, support)
        ]
    if (note := top5_note(k)) is not None:
        del out[f"{prefix}/top5"]
        out["notes"] = [note]
    if "confusion" in totals:
        out["confusion"] = np.asarray(totals["confusion"]).tolist()
    return out


def format_metrics(results: dict, prefix: str = "eval") -> str:
    """'top-1 99.72%  top-5 100.00%  loss 0.0144' of `results` ('<prefix>/top1', ...); a run
    without '<prefix>/top5' (fewer than 6 classes) says 'top-5 n/a (under 6 classes)'."""
    top5 = results.get(f"{prefix}/top5")
    shown = f"{top5:.2f}%" if top5 is not None else f"n/a (under {TOP5_MIN_CLASSES} classes)"
    loss = results.get(f"{prefix}/loss")  # none for label sets (ImageNet-ReaL)
    return f"top-1 {results[f'{prefix}/top1']:.2f}%  top-5 {shown}" + (
        f"  loss {loss:.4f}" if loss is not None else ""
    )
