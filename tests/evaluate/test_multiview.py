"""Ensembles and multi-view evaluation through the real input pipeline."""

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.metrics import confusion_matrix

from cnnx.data import EvalInput, PPContext, get_source, to_global
from cnnx.evaluate import views  # noqa: F401
from cnnx.evaluate.metrics import masked_sums, summarize
from cnnx.evaluate.multiview import (
    Member,
    evaluate_members,
    make_batch_sums,
    save_confusion_png,
)
from cnnx.train.mesh import batch_sharding, make_mesh
from tests.data.sections import data_section

CTX = PPContext(image_size=8, crop_pct=1.0, channels=1, mean=(0.5,), std=(0.5,))


def _constant_member(name, logits):
    def apply_fn(variables, x, train):
        return jnp.broadcast_to(variables["logits"], (x.shape[0], 10))

    return Member(name, apply_fn, {"logits": jnp.asarray(logits, jnp.float32)})


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_ensemble_averages_probabilities():
    src = get_source(data_section("digits"))
    eval_input = EvalInput(src, "test[:40]", "tencrop|normalize", CTX, 16)
    a = np.zeros(10)
    a[3] = 2.0
    b = np.zeros(10)
    b[7] = 3.0
    members = [_constant_member("a", a), _constant_member("b", b)]
    out = evaluate_members(members, eval_input, make_mesh(8))
    labels = np.array([int(e["label"]) for e in src.dataset(
        "test[:40]", process_index=0, process_count=1, drop_remainder=False, seed=0)])  # fmt: skip
    p = (_softmax(a) + _softmax(b)) / 2
    assert out["views"] == 10 and out["eval/examples"] == 40
    np.testing.assert_allclose(out["eval/loss"], np.mean(-np.log(p[labels])), rtol=1e-5)
    assert out["eval/top1"] == 100.0 * np.mean(labels == 7)  # b dominates the average
    cm = np.array(out["confusion"])
    assert cm.sum() == 40 and cm[:, 7].sum() == 40


def test_confusion_png(tmp_path):
    path = tmp_path / "cm.png"
    save_confusion_png([[3, 1], [0, 4]], str(path), title="t")
    assert path.stat().st_size > 1000


def test_masked_sums_match_numpy_and_sklearn():
    rng = np.random.default_rng(0)
    b, k = 64, 7
    log_probs = np.log(rng.dirichlet(np.ones(k), size=b)).astype(np.float32)
    labels = rng.integers(0, k, b)
    mask = (np.arange(b) < 50).astype(np.float32)  # the last 14 rows are padding
    sums = jax.device_get(masked_sums(jnp.asarray(log_probs), jnp.asarray(labels), mask))
    real = slice(0, 50)
    lp, y = log_probs[real], labels[real]
    ranked = np.argsort(-lp, axis=1)
    assert sums["count"] == 50
    assert sums["top1"] == np.sum(ranked[:, 0] == y)
    assert sums["top5"] == np.sum(np.any(ranked[:, :5] == y[:, None], axis=1))
    np.testing.assert_allclose(sums["loss"], -lp[np.arange(50), y].sum(), rtol=1e-5)
    cm = confusion_matrix(y, ranked[:, 0], labels=range(k))
    np.testing.assert_array_equal(sums["confusion"], cm)
    np.testing.assert_array_equal(sums["support"], cm.sum(axis=1))
    np.testing.assert_array_equal(sums["correct"], np.diag(cm))
    per_class = summarize(sums)["per_class_top1"]
    assert per_class == [100.0 * cm[i, i] / cm[i].sum() if cm[i].sum() else None for i in range(k)]


def test_batch_sums_are_replicated_scalars_not_per_example_arrays():
    """What reaches the host is a few replicated numbers, never the sharded batch."""
    mesh = make_mesh(8)
    member = _constant_member("a", np.arange(10.0))
    fn = make_batch_sums((member.apply_fn,), mesh)
    batch = {
        "image": np.zeros((16, 4, 4, 1), np.float32),
        "label": np.arange(16) % 10,
        "mask": np.ones(16, np.float32),
    }
    sums = fn((member.variables,), to_global(batch, batch_sharding(mesh)))
    assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(sums))
    assert sums["confusion"].shape == (10, 10) and sums["top1"].shape == ()
    assert int(sums["top1"]) == 1  # class 9 always predicted; label 9 once in 16
