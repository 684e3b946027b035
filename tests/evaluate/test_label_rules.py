"""Calibration, ImageNet-ReaL's label sets and the ImageNet-A/R class subsets against values
computed by hand on hand-made examples (issue 28 items 2, 3 and 5)."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from cnnx.evaluate.classification import _subset_labels, log_mean_probabilities
from cnnx.evaluate.imagenet_subsets import IMAGENET_A, IMAGENET_R
from cnnx.evaluate.metrics import masked_sums, multi_label_sums, summarize


def _log_probs(rows):
    return jnp.log(jnp.asarray(rows, jnp.float32))


def test_ece_and_nll_by_hand():
    # Confidence (probability of the predicted class) and whether it is right:
    # 0.90 right (bin 13), 0.60 wrong (bin 8), 0.55 right (bin 8), 0.95 right (bin 14).
    probs = [[0.90, 0.05, 0.05], [0.60, 0.30, 0.10], [0.25, 0.55, 0.20], [0.02, 0.03, 0.95]]
    labels = jnp.asarray([0, 1, 1, 2])
    sums = jax.device_get(masked_sums(_log_probs(probs), labels, jnp.ones(4)))
    out = summarize(sums)
    # Bins: 13 |1 - 0.90|, 8 |1 - (0.60 + 0.55)|, 14 |1 - 0.95|: (0.10 + 0.15 + 0.05) / 4.
    assert math.isclose(out["eval/ece"], 100 * 0.30 / 4, rel_tol=1e-5)
    nll = -(math.log(0.90) + math.log(0.30) + math.log(0.55) + math.log(0.95)) / 4
    assert math.isclose(out["eval/nll"], nll, rel_tol=1e-5) and out["eval/loss"] == out["eval/nll"]
    assert out["eval/top1"] == 75.0 and out["eval/examples"] == 4


def test_padding_takes_no_part_in_the_calibration():
    probs = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]
    sums = jax.device_get(masked_sums(_log_probs(probs), jnp.asarray([1, 2]), jnp.asarray([1, 0])))
    assert math.isclose(summarize(sums)["eval/ece"], 70.0, rel_tol=1e-5)  # |0 - 0.7| / 1


def test_real_label_sets_by_hand():
    # Six classes; predictions (argmax) 0, 1, 2, 3; second choices 5, 0, 1, 4.
    probs = [
        [0.50, 0.05, 0.05, 0.05, 0.05, 0.30],
        [0.30, 0.40, 0.10, 0.10, 0.05, 0.05],
        [0.05, 0.30, 0.50, 0.05, 0.05, 0.05],
        [0.05, 0.05, 0.05, 0.60, 0.20, 0.05],
    ]
    sets = np.zeros((4, 6), np.int32)
    sets[0, [0, 4]] = 1  # prediction in the set: right
    sets[1, [0]] = 1  # prediction 1 not in {0}: wrong at top-1, right at top-2..5
    sets[2, []] = 1  # no label: left out, as the ReaL paper does
    sets[3, [3, 4]] = 1  # right
    sums = jax.device_get(multi_label_sums(_log_probs(probs), jnp.asarray(sets), jnp.ones(4)))
    out = summarize(sums, num_classes=6, prefix="real")
    assert out["real/examples"] == 3
    assert math.isclose(out["real/top1"], 200 / 3) and out["real/top5"] == 100.0
    assert "real/loss" not in out and "real/nll" not in out and "confusion" not in out
    # Confidences 0.5 (right, bin 7), 0.4 (wrong, bin 5), 0.6 (right, bin 8).
    assert math.isclose(out["real/ece"], 100 * (0.5 + 0.4 + 0.4) / 3, rel_tol=1e-5)
    # Per class, over the labelled images whose set holds it: class 0 in images 0 (right)
    # and 1 (wrong), class 3 in image 3 (right), class 4 in images 0 and 3 (both right);
    # image 2's empty set counts nowhere, and image 1's prediction (1) is not in class 1's.
    assert out["per_class_top1"] == [50.0, None, None, 100.0, 100.0, None]
    # Padding counts nowhere either.
    padded = multi_label_sums(_log_probs(probs), jnp.asarray(sets), jnp.asarray([1, 1, 1, 0]))
    assert summarize(jax.device_get(padded))["per_class_top1"][3] is None


def _subset_logits(subset, label_position, decoy):
    """(1, 1000) logits: the largest outside `subset` (class `decoy`), the largest inside it
    at `subset[label_position]`."""
    z = np.zeros((1, 1000), np.float32)
    z[0, decoy] = 9.0
    z[0, subset[label_position]] = 5.0
    return jnp.asarray(z)


def test_a_and_r_restrict_the_logits_to_their_200_classes_before_the_argmax():
    outside = next(c for c in range(1000) if c not in IMAGENET_A)
    for subset in (IMAGENET_A, IMAGENET_R):
        logits = _subset_logits(subset, 17, outside if subset is IMAGENET_A else 0)
        images = logits.reshape(1, 1, 1, 1000)  # (B, H, W, C): the "model" returns them
        fn = lambda v, x, train: x.reshape(x.shape[0], -1)  # noqa: E731
        log_probs, scores = log_mean_probabilities([{}], images, [fn], tuple(subset))
        assert log_probs.shape == (1, 200) and int(jnp.argmax(scores)) == 17
        labels, mask = _subset_labels(
            jnp.asarray([subset[17], outside]), jnp.ones(2), tuple(subset), False
        )
        # Labels are mapped to their place in the subset; a label outside it is left out.
        assert int(labels[0]) == 17 and mask.tolist() == [1.0, float(outside in subset)]
        sums = masked_sums(log_probs, labels[:1], mask[:1], scores=scores)
        assert float(sums["top1"]) == 1.0  # over all 1000 classes it would be a miss
    # Softmax over the subset: the decoy's logit no longer takes probability.
    expected = 5.0 - math.log(math.exp(5.0) + 199.0)
    assert math.isclose(float(log_probs[0, 17]), expected, rel_tol=1e-5)


def test_the_subsets_are_timms_tables():
    import timm.data

    info = os.path.join(os.path.dirname(timm.data.__file__), "_info")
    for name, table in (("a", IMAGENET_A), ("r", IMAGENET_R)):
        with open(os.path.join(info, f"imagenet_{name}_indices.txt")) as f:
            assert tuple(int(x) for x in f.read().split()) == table
        assert len(set(table)) == 200 and max(table) < 1000
