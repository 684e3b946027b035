"""Evaluators by type: what a `config.evals` entry (`cnnx.evaluate.entries`) turns into.

An evaluator is built once per run (its jitted per-batch function compiles once) and called
with the model's variables at each of its evaluations; it returns its metrics as
'<name>/<metric>' scalars and keeps the arrays of its last pass (per-class top-1, confusion)
in `arrays`. The trainer builds each one's input (`cnnx.train.build.make_evaluators`), so this
module needs no trainer.
"""

from collections.abc import Callable

import numpy as np

from cnnx.data import EvalInput
from cnnx.evaluate import classification
from cnnx.evaluate.entries import Entry
from cnnx.evaluate.imagenet_subsets import CLASS_SUBSETS


class ClassificationEvaluator:
    """Top-1, top-5, NLL, ECE (and per-class top-1 on request) of one eval input.

    With `labels='real'` (ImageNet-ReaL's label sets) a prediction is right when it is in the
    image's set and images without labels are left out; top-1, top-5, ECE and per-class top-1
    (over the images whose set holds the class) are reported, the loss / NLL and the confusion
    matrix are not: neither is defined for a multi-label target (`metrics.multi_label_sums`).
    With `class_subset` (ImageNet-A, -R) the logits are restricted to the subset's classes
    before the softmax and the argmax, and every figure is over those classes.

    Args:
      entry: the resolved config entry (options: per_class, labels, class_subset).
      eval_input: its split, preprocessed (None: given at each call).
      apply_fns: one `apply_fn(variables, images, train=False)` per model (an ensemble
        averages their probabilities).
      mesh: the device mesh.
      num_classes: the models' logits width.
      confusion: also sum the confusion matrix (eval.py; K² integers).
    """

    def __init__(
        self,
        entry: Entry,
        eval_input: EvalInput,
        apply_fns: tuple,
        mesh,
        num_classes: int,
        confusion: bool = False,
    ):
        self.name, self.entry, self.eval_input, self.mesh = entry.name, entry, eval_input, mesh
        subset = CLASS_SUBSETS.get(entry.options.get("class_subset") or "")
        if subset is not None and max(subset) >= num_classes:
            from cnnx.errors import ConfigError

            raise ConfigError(
                f"--config.evals.{entry.name}.options.class_subset="
                f"{entry.options['class_subset']!r} picks classes of ImageNet's 1000, but the "
                f"model predicts {num_classes}; use it with an ImageNet-1k model."
            )
        self.multi_label = entry.options.get("labels") == "real"
        self.num_classes = len(subset) if subset is not None else num_classes
        self.batch_sums = classification.make_batch_sums(
            tuple(apply_fns),
            mesh,
            confusion=confusion and not self.multi_label,
            multi_label=self.multi_label,
            class_subset=subset,
        )
        self.per_class = bool(entry.options.get("per_class"))
        self.arrays: dict[str, np.ndarray] = {}

    def __call__(
        self,
        variables: tuple,
        stop: Callable[[], bool] | None = None,
        eval_input: EvalInput | None = None,
    ) -> dict | None:
        """One pass over `eval_input` (default: its own) with `variables` (one dict per model):
        '<name>/top1', '<name>/top5', '<name>/loss', '<name>/nll', '<name>/ece',
        '<name>/examples' (None when `stop` said so); the pass's arrays in `self.arrays`."""
        results = classification.evaluate(
            self.batch_sums,
            variables,
            eval_input or self.eval_input,
            self.mesh,
            stop=stop,
            prefix=self.name,
            num_classes=self.num_classes,
        )
        if results is None:
            return None
        self.arrays = {}
        if "per_class_top1" in results and (self.per_class or "confusion" in results):
            per_class = results["per_class_top1"]
            self.arrays["per_class_top1"] = np.array(
                [np.nan if v is None else v for v in per_class], np.float64
            )
        if "confusion" in results:
            self.arrays["confusion"] = np.asarray(results["confusion"], np.int32)
        self.views = results["views"]
        return {k: v for k, v in results.items() if k.startswith(f"{self.name}/")}


# Evaluator type -> its class; the keys are `cnnx.evaluate.entries.EVALUATOR_OPTIONS`'.
EVALUATORS = {"classification": ClassificationEvaluator}


def create(entry: Entry, eval_input: EvalInput, apply_fns: tuple, mesh, num_classes: int, **kw):
    """The evaluator of a resolved entry (`EVALUATORS[entry.type]`)."""
    return EVALUATORS[entry.type](entry, eval_input, apply_fns, mesh, num_classes, **kw)
