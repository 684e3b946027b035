"""Top-k accuracy, shared by the train step's metrics and evaluation (cnnx/accuracy.py)."""

import jax.numpy as jnp
import numpy as np

from cnnx.accuracy import topk_accuracy, topk_hits


def test_topk_hits_and_accuracy():
    logits = jnp.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05]])
    labels = jnp.array([1, 2])
    hits, top = topk_hits(logits, labels, 5)  # k capped at the 3 classes
    np.testing.assert_array_equal(top, [[1, 0, 2], [0, 1, 2]])
    np.testing.assert_array_equal(hits, [[True, False, False], [False, False, True]])
    np.testing.assert_array_equal(hits[:, 0], [True, False])  # top-1
    np.testing.assert_array_equal(hits.any(-1), [True, True])  # top-5
    assert float(topk_accuracy(logits, labels, 1)) == 50.0
    assert float(topk_accuracy(logits, labels, 2)) == 50.0
    assert float(topk_accuracy(logits, labels, 5)) == 100.0


def test_ties_go_to_the_lower_class_as_argmax():
    scores = jnp.array([[1.0, 3.0, 3.0, 0.0]])
    hits, top = topk_hits(scores, jnp.array([2]), 2)
    assert int(top[0, 0]) == int(jnp.argmax(scores[0])) == 1
    np.testing.assert_array_equal(hits, [[False, True]])
