"""Multi-view, multi-model evaluation: softmax averaging over test-time views and over an
ensemble of checkpoints, with per-class accuracy and a confusion matrix.

All views of a batch go through the model in one call ((B, V, S, S, C) reshaped to
(B·V, S, S, C)), so a 144-view evaluation runs at the model's speed, not Python's. Each batch
is reduced on device to masked sums (loss, top-1, top-5, per-class counts, confusion matrix),
replicated over the mesh, so nothing but those sums ever reaches a host: the same code runs on
one process or on every process of a multi-host slice, each feeding its share of the split.
"""

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cnnx.data import EvalInput, to_global
from cnnx.evaluate.metrics import masked_sums, summarize
from cnnx.train.mesh import batch_sharding, replicated


@dataclasses.dataclass
class Member:
    """One model of an ensemble: its apply function and variables."""

    name: str
    apply_fn: object
    variables: dict


def log_mean_probabilities(variables: Sequence[dict], images, apply_fns: Sequence):
    """Log of the softmax probabilities averaged over views and models.

    Args:
      variables: one variables dict per model.
      images: (B, V, H, W, C) views, or (B, H, W, C) for one view.
      apply_fns: one `apply_fn(variables, images, train=False) -> logits` per model.

    Returns:
      (B, K) float32 log(mean over the V views and the models of softmax(logits)), computed
      with logsumexp, so a confident wrong model gives a large finite loss, not log(0).
    """
    if images.ndim == 4:
        images = images[:, None]
    b, v = images.shape[:2]
    flat = images.reshape((b * v, *images.shape[2:]))
    log_probs = [
        jax.nn.log_softmax(fn(var, flat, train=False).astype(jnp.float32), axis=-1)
        for fn, var in zip(apply_fns, variables, strict=True)
    ]
    stacked = jnp.concatenate([lp.reshape(b, v, -1) for lp in log_probs], axis=1)
    return jax.nn.logsumexp(stacked, axis=1) - math.log(stacked.shape[1])


@functools.lru_cache(maxsize=16)
def make_batch_sums(apply_fns: tuple, mesh, *, confusion: bool = True):
    """A jitted `fn(variables, batch) -> masked sums` of the averaged models, replicated.

    `variables` is a tuple (one dict per model, any sharding); `batch` holds global 'image',
    'label' and 'mask' arrays. The sums come back replicated over `mesh`, so every process can
    read them (`jax.device_get`) although the batch spans all processes. Cached, so repeated
    evaluations of the same models (FixRes: before and after fine-tuning) compile once.
    """

    def fn(variables, batch):
        log_probs = log_mean_probabilities(variables, batch["image"], apply_fns)
        return masked_sums(log_probs, batch["label"], batch["mask"], confusion=confusion)

    return jax.jit(fn, out_shardings=replicated(mesh))


def evaluate_members(
    members: list[Member], eval_input: EvalInput, mesh, *, confusion: bool = True
) -> dict:
    """Top-1 / top-5 / loss of the averaged probabilities of `members` over all views.

    Run it on every process of a multi-process job: each feeds its share of the split and gets
    the same (global) metrics back.

    Args:
      members: the models whose probabilities are averaged (one for a plain evaluation).
      eval_input: the split; its pp may yield (V, S, S, C) views per example.
      mesh: the device mesh (batches are sharded over its data axes).
      confusion: also return the (K, K) confusion matrix; K² integers, so leave it off for
        tens of thousands of classes.

    Returns:
      Metrics ('eval/top1', 'eval/top5', 'eval/loss', 'eval/examples', 'views'),
      'members' (names), 'per_class_top1' (None for a class with no example) and 'confusion'
      (rows: true class, columns: predicted) as lists.
    """
    sharding = batch_sharding(mesh)
    variables = tuple(jax.device_put(m.variables, replicated(mesh)) for m in members)
    batch_sums = make_batch_sums(tuple(m.apply_fn for m in members), mesh, confusion=confusion)
    totals, views = None, 1
    for batch in eval_input.iterate():
        if batch["image"].ndim == 5:
            views = batch["image"].shape[1]
        sums = batch_sums(variables, to_global(batch, sharding))
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    if totals is None:
        eval_input.check_count(0)  # raises: the split gave no batch
    totals = jax.device_get(totals)  # replicated scalars and (K,) / (K, K) counts
    eval_input.check_count(float(totals["count"]))
    return {**summarize(totals), "views": int(views), "members": [m.name for m in members]}


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
