"""The one classification evaluation: a jitted per-batch function returning masked sums,
added up in one loop (`evaluate`), for the training loop's periodic evaluation, eval.py and
FixRes alike (the shape of big_vision's `evaluators/classification.py`).

Test-time views and ensembles are its inputs: all views of a batch go through each model in
one call ((B, V, S, S, C) reshaped to (B·V, S, S, C)) and the softmax probabilities are
averaged over views and models, so a 144-view evaluation runs at the model's speed, not
Python's. Each batch is reduced on device to masked sums (loss, top-1, top-5, per-class counts,
optionally the confusion matrix; `cnnx.evaluate.metrics`), replicated over the mesh, so nothing
but those sums ever reaches a host: the same code runs on one process or on every process of a
multi-host slice, each feeding its share of the split.
"""

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from cnnx.data import EvalInput, to_global
from cnnx.errors import DataError
from cnnx.evaluate.metrics import masked_sums, multi_label_sums, summarize
from cnnx.evaluate.progress import progress_bar
from cnnx.parallel.mesh import batch_sharding, replicated


@dataclasses.dataclass
class Member:
    """One model of an ensemble: its name, `apply_fn(variables, images, train=False)` and
    variables."""

    name: str
    apply_fn: object
    variables: dict


def log_mean_probabilities(
    variables: Sequence[dict], images, apply_fns: Sequence, class_subset: tuple | None = None
):
    """Log of the softmax probabilities averaged over views and models.

    Args:
      variables: one variables dict per model.
      images: (B, V, H, W, C) views, or (B, H, W, C) for one view.
      apply_fns: one `apply_fn(variables, images, train=False) -> logits` per model.
      class_subset: class indices the logits are restricted to before the softmax and the
        argmax (ImageNet-A and -R: 200 of the 1000 classes, as timm's validate masks them);
        the returned K is then `len(class_subset)`, in that order.

    Returns:
      (log_probs, scores): log_probs (B, K) float32 log(mean over the V views and the models
      of softmax(logits)), computed with logsumexp, so a confident wrong model gives a large
      finite loss, not log(0); scores, what the prediction ranks: the float32 logits for one
      model and one view (their argmax, exactly), else log_probs.
    """
    if images.ndim == 4:
        images = images[:, None]
    b, v = images.shape[:2]
    flat = images.reshape((b * v, *images.shape[2:]))
    logits = [
        fn(var, flat, train=False).astype(jnp.float32)
        for fn, var in zip(apply_fns, variables, strict=True)
    ]
    if class_subset is not None:
        logits = [z[:, jnp.asarray(class_subset)] for z in logits]
    if len(logits) == 1 and v == 1:
        return jax.nn.log_softmax(logits[0], axis=-1), logits[0]
    log_probs = [jax.nn.log_softmax(z, axis=-1).reshape(b, v, -1) for z in logits]
    stacked = jnp.concatenate(log_probs, axis=1)
    mean = jax.nn.logsumexp(stacked, axis=1) - math.log(stacked.shape[1])
    return mean, mean


@functools.lru_cache(maxsize=16)
def make_batch_sums(
    apply_fns: tuple,
    mesh,
    *,
    confusion: bool = True,
    multi_label: bool = False,
    class_subset: tuple | None = None,
):
    """The per-batch function: a jitted `fn(variables, batch) -> masked sums`, replicated.

    Args:
      apply_fns: one `apply_fn(variables, images, train=False) -> logits` per model (hashable:
        the function is cached, so repeated evaluations of the same models compile once).
      mesh: the device mesh.
      confusion: also sum the (K, K) confusion matrix (K² integers: leave it off for the
        periodic evaluation and for tens of thousands of classes).
      multi_label: the batch's 'label' is (B, K) label sets (`metrics.multi_label_sums`:
        ImageNet-ReaL), not (B,) labels.
      class_subset: restrict the logits to these classes (`log_mean_probabilities`); labels
        are mapped to their position in it, and an example whose label is not in it is left
        out.

    Returns:
      `fn(variables, batch)`: `variables` a tuple (one dict per model, any sharding), `batch`
      global 'image' ((B, H, W, C) or (B, V, H, W, C)), 'label' and 'mask' (B,) arrays;
      it returns `metrics.masked_sums`'s dict (or `multi_label_sums`'s), replicated over
      `mesh`, so every process can read it although the batch spans all processes.
    """

    def eval_step(variables, batch):  # the name XLA, profiles and the compile cache show
        images, labels, mask = batch["image"], batch["label"], batch["mask"]
        log_probs, scores = log_mean_probabilities(variables, images, apply_fns, class_subset)
        # Every real example is read once ('seen'); a label rule may leave some out of 'count'
        # (an empty ReaL set, a label outside the class subset).
        seen = jnp.sum(mask.astype(jnp.float32))
        if class_subset is not None:
            labels, mask = _subset_labels(labels, mask, class_subset, multi_label)
        if multi_label:
            return {**multi_label_sums(log_probs, labels, mask, scores=scores), "seen": seen}
        sums = masked_sums(log_probs, labels, mask, scores=scores, confusion=confusion)
        return {**sums, "seen": seen}

    return jax.jit(eval_step, out_shardings=replicated(mesh))


def _subset_labels(labels, mask, class_subset: tuple, multi_label: bool):
    """Labels in the positions of `class_subset`; examples whose label is outside it masked."""
    subset = jnp.asarray(class_subset)
    if multi_label:
        return labels[:, subset], mask
    where = labels[:, None] == subset[None, :]  # (B, S)
    inside = jnp.any(where, axis=-1)
    return jnp.argmax(where, axis=-1).astype(labels.dtype), mask * inside.astype(mask.dtype)


def evaluate(
    batch_sums: Callable,
    variables,
    eval_input: EvalInput,
    mesh,
    *,
    stop: Callable[[], bool] | None = None,
    prefix: str = "eval",
    num_classes: int | None = None,
) -> dict | None:
    """One pass over `eval_input`: the batch sums added up on device, then summarized.

    Run it on every process of a multi-process job: each feeds its share of the split and gets
    the same (global) metrics back. Progress goes to stderr (a bar on a terminal, a log line
    every 30 s otherwise; `cnnx.evaluate.progress`).

    Args:
      batch_sums: `fn(variables, batch)` from `make_batch_sums`.
      variables: its first argument (a tuple of variables dicts, one per model).
      eval_input: the split; its pp may yield (V, S, S, C) views per example.
      mesh: the device mesh (batches are sharded over its data axes).
      stop: optional `fn() -> bool`, checked between batches; when it says so the pass is
        abandoned and None returned (SIGTERM during the final evaluation of a run).
      prefix: the metrics' prefix (the evaluator's name).
      num_classes: the scores' width (needed for label sets, which carry no per-class sums).

    Returns:
      `metrics.summarize`'s dict ('eval/top1', 'eval/top5', 'eval/loss', 'eval/nll',
      'eval/ece', 'eval/examples', 'num_classes', 'per_class_top1', 'confusion' when summed;
      `prefix` for 'eval') and 'views' (per example).

    Raises:
      DataError: no readable example in the split.
    """
    sharding = batch_sharding(mesh)
    totals, views = None, 1
    desc = f"eval {eval_input.split} ({eval_input.num_examples} images)"
    with progress_bar(eval_input.num_batches, desc) as bar:
        for batch in eval_input.iterate():
            if stop is not None and stop():
                return None
            if batch["image"].ndim == 5:
                views = batch["image"].shape[1]
            sums = batch_sums(variables, to_global(batch, sharding))
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
            bar.update()
    if totals is None:
        eval_input.check_count(0)  # raises: the split gave no batch
    totals = jax.device_get(totals)  # replicated scalars and (K,) / (K, K) counts
    eval_input.check_count(float(totals["seen"]))
    if not totals["count"]:
        raise DataError(
            f"None of the {int(totals['seen'])} examples of split {eval_input.split!r} of "
            f"{eval_input.source.name} has a label the evaluation counts (empty label sets, or "
            "labels outside its class subset)."
        )
    return {**summarize(totals, num_classes, prefix), "views": int(views)}


def evaluate_members(
    members: list[Member], eval_input: EvalInput, mesh, *, confusion: bool = True
) -> dict:
    """`evaluate` of the averaged probabilities of `members` over all views.

    Args:
      members: the models whose probabilities are averaged (one for a plain evaluation);
        their variables are placed replicated on `mesh`.
      eval_input: the split; its pp may yield (V, S, S, C) views per example.
      mesh: the device mesh.
      confusion: also return the (K, K) confusion matrix (see `make_batch_sums`).

    Returns:
      `evaluate`'s metrics and 'members' (names); 'per_class_top1' and 'confusion' (rows:
      true class, columns: predicted) as lists.
    """
    variables = tuple(jax.device_put(m.variables, replicated(mesh)) for m in members)
    batch_sums = make_batch_sums(tuple(m.apply_fn for m in members), mesh, confusion=confusion)
    results = evaluate(batch_sums, variables, eval_input, mesh)
    return {**results, "members": [m.name for m in members]}
