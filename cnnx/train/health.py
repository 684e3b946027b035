"""Run health: warn when a run is diverging or stuck at chance, with the likely cause.

A run whose learning rate is too high for its data often does not reach NaN (which the loop
stops or skips): the loss climbs above its starting value, saturated units stop learning, and
the run ends at chance accuracy with nothing said. `RunHealth` watches the metrics the loop
already fetches (the mean train loss of each log step, the eval top-1 of each evaluation) and
logs one WARNING line per problem, with its likely cause and what to try; the loop records
the lines in results.json under "warnings". Pure host-side logic on floats: no JAX.

Two rules, tuned so that healthy runs (the demo, the coloured-digits check) never warn:

* **Diverging**: the train loss stays above `DIVERGE_FACTOR` × its reference for
  `PATIENCE` logs in a row. The reference is the lower of the first logged loss and
  ln(num_classes), the loss of a uniform guess (where a fresh network starts), so a run that
  blew up within its first log window is caught too.
* **Stuck at chance**: once the run is `MIN_PROGRESS` of the way through (and at least
  `MIN_EPOCHS` epochs in), the last `PATIENCE` evaluations all lie within `NOISE_SIGMAS`
  binomial standard deviations of chance (100 / num_classes %). Progress is measured against
  the run's length because a small dataset's epochs are few steps: a healthy run of the
  default recipe on 1,400 coloured digits is at chance for its first 3 epochs (66 steps).
"""

import dataclasses
import math

from absl import logging

DIVERGE_FACTOR = 1.5
PATIENCE = 3
MIN_EPOCHS = 3.0
MIN_PROGRESS = 0.25
NOISE_SIGMAS = 3.0


def chance_top1(num_classes: int) -> float:
    """Top-1 (%) of a guess: 100 / num_classes."""
    return 100.0 / num_classes


def chance_band(num_classes: int, examples: int, sigmas: float = NOISE_SIGMAS) -> float:
    """The highest top-1 (%) still within `sigmas` binomial standard deviations of chance.

    Args:
      num_classes: classes of the task (chance is 1 / num_classes).
      examples: evaluated examples (the noise of a measured accuracy shrinks with them).
      sigmas: how many standard deviations count as noise.
    """
    p = 1.0 / num_classes
    return 100.0 * (p + sigmas * math.sqrt(p * (1.0 - p) / max(1, examples)))


def diverging(losses, num_classes: int) -> bool:
    """Whether the last `PATIENCE` logged losses all exceed `DIVERGE_FACTOR` × the reference
    (the lower of the first logged loss and ln(num_classes)).

    Args:
      losses: mean train loss of each log step so far, oldest first.
      num_classes: classes of the task.
    """
    if len(losses) < PATIENCE:
        return False
    limit = DIVERGE_FACTOR * min(losses[0], math.log(num_classes))
    return all(loss > limit for loss in losses[-PATIENCE:])


def stuck_at_chance(evals, num_classes: int, steps_per_epoch: int, total_steps: int) -> bool:
    """Whether the last `PATIENCE` evaluations are all within noise of chance, the newest at
    least `MIN_EPOCHS` epochs and `MIN_PROGRESS` of the run in.

    Args:
      evals: (step, top1 in %, examples) of each evaluation so far, oldest first.
      num_classes: classes of the task.
      steps_per_epoch: training steps per epoch.
      total_steps: training steps of the whole run.
    """
    started = max(MIN_EPOCHS * steps_per_epoch, MIN_PROGRESS * total_steps)
    if len(evals) < PATIENCE or evals[-1][0] < started:
        return False
    return all(top1 <= chance_band(num_classes, n) for _, top1, n in evals[-PATIENCE:])


@dataclasses.dataclass
class RunHealth:
    """Collects a run's train losses and eval accuracies; warns once per problem.

    Attributes:
      num_classes: classes of the task.
      steps_per_epoch: training steps per epoch.
      total_steps: training steps of the whole run.
      base_lr: the config's `optim.base_lr`, for the suggested lower value.
      source: the config's `data.source` ('folder:<path>', 'tfds:<name>', 'digits', ...),
        for where to look when the splits' labels disagree.
      warnings: the warning lines so far (for results.json), in order.
    """

    num_classes: int
    steps_per_epoch: int
    total_steps: int
    base_lr: float | None = None
    source: str | None = None
    warnings: list = dataclasses.field(default_factory=list)
    _losses: list = dataclasses.field(default_factory=list)
    _evals: list = dataclasses.field(default_factory=list)
    _warned: set = dataclasses.field(default_factory=set)

    def add_train(self, step: int, loss: float | None) -> None:
        """Records the mean train loss of the log step `step` (None or NaN: nothing to add)."""
        if loss is None or not math.isfinite(loss):
            return
        self._losses.append(float(loss))
        if "diverging" not in self._warned and diverging(self._losses, self.num_classes):
            start = min(self._losses[0], math.log(self.num_classes))
            self._warn(
                "diverging",
                f"Run health: the train loss has stayed above {DIVERGE_FACTOR:g}x its "
                f"starting level for {PATIENCE} logs (now {loss:.3g} at step {step}, epoch "
                f"{self._epoch(step):.1f}; starting level {start:.3g}, the lower of its first "
                f"value and ln({self.num_classes}), a uniform guess): the run is diverging. "
                f"Likely cause: a learning rate too high for this data and model. Try "
                f"{self._lower_lr()}, a longer --config.schedule.warmup_epochs, or "
                "--config.optim.grad_clip_norm=1.",
            )

    def add_eval(self, step: int, metrics: dict) -> None:
        """Records an evaluation at `step` ('eval/top1' in %, 'eval/examples')."""
        if "eval/top1" not in metrics:
            return
        self._evals.append((step, float(metrics["eval/top1"]), int(metrics["eval/examples"])))
        if "stuck" in self._warned or not stuck_at_chance(
            self._evals, self.num_classes, self.steps_per_epoch, self.total_steps
        ):
            return
        top1 = self._evals[-1][1]
        self._warn(
            "stuck",
            f"Run health: eval top-1 is {top1:.1f}% at epoch {self._epoch(step):.1f}, within "
            f"noise of chance ({chance_top1(self.num_classes):.1f}% for {self.num_classes} "
            f"classes) for {PATIENCE} evaluations: the model is not learning. "
            + self._stuck_cause(),
        )

    def _stuck_cause(self) -> str:
        """The likely cause of a run at chance, told apart by its train loss."""
        chance_loss = math.log(self.num_classes)
        if self._losses and min(self._losses) < 0.5 * chance_loss:
            return (
                f"The train loss fell to {self._losses[-1]:.3g} (chance level {chance_loss:.3g}), "
                "so it fits the training images but not the eval split: check that train_pp "
                f"and eval_pp preprocess alike, and {self._label_check()}."
            )
        above = bool(self._losses) and max(self._losses) > chance_loss
        return (
            f"The train loss has not fallen well below chance level ({chance_loss:.3g}"
            + (", and went above it" if above else "")
            + "). Likely cause: a learning rate too high for this data and model (or labels "
            f"that do not match the images). Try {self._lower_lr()}."
        )

    def _label_check(self) -> str:
        """Where a mismatch between the splits' labels can come from, for this source."""
        kind, _, arg = (self.source or "").partition(":")
        if kind == "folder":
            return f"that both splits of {arg} have the same class folders"
        if kind == "tfds":
            return (
                "that data.train_split and data.eval_split come from one prepared copy whose "
                "evaluation files are the ones its labels are for (ImageNet labels validation "
                "images by file name: prepare it again from the original archive with "
                f"`python -m cnnx.data.prepare {arg}`)"
            )
        return (
            "the labels come with this in-memory data, so look at preprocessing or at a model "
            "memorising a small training set (more augmentation or weight decay)"
        )

    def _lower_lr(self) -> str:
        if self.base_lr:
            return f"--config.optim.base_lr={self.base_lr / 10:g} (a tenth)"
        return "a lower --config.optim.base_lr (a tenth)"

    def _epoch(self, step: int) -> float:
        return step / max(1, self.steps_per_epoch)

    def _warn(self, kind: str, line: str) -> None:
        self._warned.add(kind)
        self.warnings.append(line)
        logging.warning("%s", line)
