"""Multi-view, multi-model evaluation: softmax averaging over test-time views and over an
ensemble of checkpoints, with per-class accuracy and a confusion matrix.

All views of a batch go through the model in one call ((B, V, S, S, C) reshaped to
(B·V, S, S, C)), so a 144-view evaluation runs at the model's speed, not Python's.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from cnnx.data import EvalInput, to_global
from cnnx.train.mesh import batch_sharding, replicated


@dataclasses.dataclass
class Member:
    """One model of an ensemble: its apply function and variables."""

    name: str
    apply_fn: object
    variables: dict


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def view_probabilities(variables, images, *, apply_fn):
    """Softmax probabilities averaged over views: images (B, V, H, W, C) or (B, H, W, C)."""
    if images.ndim == 4:
        images = images[:, None]
    b, v = images.shape[:2]
    logits = apply_fn(variables, images.reshape((b * v, *images.shape[2:])), train=False)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    return probs.reshape(b, v, -1).mean(axis=1)


def evaluate_members(members: list[Member], eval_input: EvalInput, mesh) -> dict:
    """Top-1 / top-5 / loss of the averaged probabilities of `members` over all views.

    Returns:
      Metrics ('eval/top1', 'eval/top5', 'eval/loss', 'eval/examples', 'views'), plus
      'per_class_top1' and 'confusion' (rows: true class, columns: predicted) as lists.
    """
    sharding = batch_sharding(mesh)
    variables = [jax.device_put(m.variables, replicated(mesh)) for m in members]
    num_classes, views = None, 1
    probs_all, labels_all = [], []
    for batch in eval_input.iterate():
        mask = batch.pop("mask") > 0
        if batch["image"].ndim == 5:
            views = batch["image"].shape[1]
        g = to_global(batch, sharding)
        probs = None
        for m, v in zip(members, variables):
            p = view_probabilities(v, g["image"], apply_fn=m.apply_fn)
            probs = p if probs is None else probs + p
        probs = np.asarray(jax.device_get(probs / len(members)))
        probs_all.append(probs[mask])
        labels_all.append(batch["label"][mask])
        num_classes = probs.shape[-1]
    probs = np.concatenate(probs_all)
    labels = np.concatenate(labels_all).astype(np.int64)
    n = len(labels)
    eval_input.check_count(n)
    top5 = np.argsort(-probs, axis=-1)[:, : min(5, num_classes)]
    predictions = top5[:, 0]
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    support = confusion.sum(axis=1)
    per_class = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)
    nll = -np.log(np.clip(probs[np.arange(n), labels], 1e-12, None))
    return {
        "eval/top1": 100.0 * float(np.mean(predictions == labels)),
        "eval/top5": 100.0 * float(np.mean(np.any(top5 == labels[:, None], axis=1))),
        "eval/loss": float(np.mean(nll)),
        "eval/examples": int(n),
        "views": int(views),
        "members": [m.name for m in members],
        "per_class_top1": [None if np.isnan(x) else 100.0 * float(x) for x in per_class],
        "confusion": confusion.tolist(),
    }


def save_confusion_png(confusion, path: str, class_names=None, title: str = "") -> None:
    """Writes a confusion matrix (rows true, columns predicted) as a PNG heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion)
    k = cm.shape[0]
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * k + 2), max(3.5, 0.45 * k + 1.5)))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    if k <= 30:
        names = class_names or [str(i) for i in range(k)]
        ax.set_xticks(range(k), names, rotation=90 if k > 10 else 0)
        ax.set_yticks(range(k), names)
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    color = "white" if cm[i, j] > cm.max() / 2 else "black"
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
