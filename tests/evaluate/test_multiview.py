"""Ensembles and multi-view evaluation through the real input pipeline."""

import jax.numpy as jnp
import numpy as np

from cnnx.data import EvalInput, PPContext, get_source
from cnnx.evaluate import views  # noqa: F401
from cnnx.evaluate.multiview import Member, evaluate_members, save_confusion_png
from cnnx.train.mesh import make_mesh

CTX = PPContext(image_size=8, crop_pct=1.0, channels=1, mean=(0.5,), std=(0.5,))


def _constant_member(name, logits):
    def apply_fn(variables, x, train):
        return jnp.broadcast_to(variables["logits"], (x.shape[0], 10))

    return Member(name, apply_fn, {"logits": jnp.asarray(logits, jnp.float32)})


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_ensemble_averages_probabilities():
    src = get_source("digits")
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
