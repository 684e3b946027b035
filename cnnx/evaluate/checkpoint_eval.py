"""Evaluate a checkpoint of a workdir on a split, at a chosen resolution and crop ratio."""

import json
import os

import jax
import ml_collections

from cnnx.errors import CheckpointError, ConfigError
from cnnx.train import optim
from cnnx.train.checkpoint import Checkpointer
from cnnx.train.experiment import setup
from cnnx.train.loop import evaluate_state, init_state, make_eval_fn, make_eval_input


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a workdir was trained with (written by `train_and_evaluate`)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ConfigError(
            f"{path} not found: is {workdir!r} a cnnx workdir? Pass --config explicitly."
        )
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def restore_state(config, workdir: str, step: int | None = None):
    """Builds the experiment from `config` and restores its train state from `workdir`."""
    exp = setup(config)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), asynchronous=False)
    if ckpt.latest_step() is None:
        raise CheckpointError(
            f"No checkpoint in {ckpt.directory}; train first (python train.py --workdir="
            f"{workdir}) or point --workdir at a run."
        )
    # The optimizer only shapes the template; its values come from the checkpoint.
    schedule = optim.make_schedule(config.schedule, 0.0, 1, 1)
    tx = optim.make_optimizer(config.optim, schedule)
    template, _ = init_state(exp, tx, jax.random.PRNGKey(0))
    state = ckpt.restore(template, step)
    ckpt.close()
    return exp, state


def evaluate_checkpoint(
    config,
    workdir: str,
    *,
    step: int | None = None,
    split: str | None = None,
    image_size: int | None = None,
    crop_pct: float | None = None,
    use_ema: bool = False,
) -> dict:
    """Top-1 / top-5 / loss of a checkpoint on a split.

    Args:
      config: the training config (e.g. from `load_workdir_config`).
      workdir: the run's directory.
      step: checkpoint step (default: the newest).
      split: dataset split (default: config.data.eval_split).
      image_size: evaluation resolution (default: the config's).
      crop_pct: centre-crop ratio (default: the config's / model's).
      use_ema: evaluate the EMA weights (when the run kept them).
    """
    config = ml_collections.ConfigDict(config.to_dict())
    if crop_pct is not None:
        config.data.crop_pct = crop_pct
    exp, state = restore_state(config, workdir, step)
    eval_input = make_eval_input(exp, split=split, image_size=image_size)
    eval_fn = make_eval_fn(exp, exp.model.num_classes)
    results = evaluate_state(exp, state.eval_variables(ema=use_ema), eval_input, eval_fn)
    results.update(
        {
            "step": int(jax.device_get(state.step)),
            "split": eval_input.split,
            "image_size": eval_input.ctx.image_size,
            "crop_pct": exp.crop_pct,
            "model": exp.spec.name,
            "ema": use_ema,
        }
    )
    return results
