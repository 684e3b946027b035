"""Evaluate checkpoints of workdirs: any split, resolution, crop ratio, test-time views, and
ensembles of several runs (probabilities averaged)."""

import json
import os

import jax
import ml_collections

from cnnx.errors import CheckpointError, ConfigError
from cnnx.evaluate import views as views_lib
from cnnx.evaluate.multiview import Member, evaluate_members
from cnnx.train import optim
from cnnx.train.checkpoint import Checkpointer
from cnnx.train.config import base_config
from cnnx.train.experiment import setup
from cnnx.train.loop import init_state, make_eval_input, make_tx


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a workdir was trained with (written by `train_and_evaluate`)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ConfigError(
            f"{path} not found: is {workdir!r} a cnnx workdir? Pass --config explicitly."
        )
    with open(path) as f:
        saved = json.load(f)
    # Start from today's schema so fields added since the run was made get their defaults.
    config = base_config()
    for section, values in saved.items():
        if isinstance(values, dict) and section in config:
            for key, value in values.items():
                config[section][key] = tuple(value) if isinstance(value, list) else value
        else:
            config[section] = values
    _fit_mesh(config)
    return config


def _fit_mesh(config) -> None:
    """Adapts a saved run's mesh to this machine (checkpoints restore onto any mesh)."""
    from absl import logging

    from cnnx.train.mesh import mesh_shape

    m = config.mesh
    try:
        mesh_shape(jax.device_count(), m.data, m.fsdp, m.model)
        return
    except ConfigError:
        pass
    old = (m.data, m.fsdp, m.model)
    m.data = -1
    if jax.device_count() % (m.fsdp * m.model):
        m.fsdp, m.model = 1, 1
    logging.info(
        "The run's mesh data,fsdp,model=%s does not fit the %d devices here; using %s.",
        old,
        jax.device_count(),
        (m.data, m.fsdp, m.model),
    )


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
    template, _ = init_state(exp, make_tx(config, schedule), jax.random.PRNGKey(0))
    state = ckpt.restore(template, step)
    ckpt.close()
    return exp, state


def view_pp(views: str | None, eval_pp: str) -> str:
    """The eval pp string with its resize/crop op replaced by a view op (`tencrop`, ...)."""
    if not views:
        return eval_pp
    if views.split("(")[0].strip() not in views_lib.VIEW_OPS:
        raise ConfigError(f"Unknown --views={views!r}; use one of {sorted(views_lib.VIEW_OPS)}.")
    ops = [p.strip() for p in eval_pp.split("|")]
    kept = [p for p in ops if p.split("(")[0] not in ("resize_crop", "resize", "decode")]
    return "|".join([views, *kept])


def evaluate_checkpoint(
    config,
    workdir: str,
    *,
    step: int | None = None,
    split: str | None = None,
    image_size: int | None = None,
    crop_pct: float | None = None,
    use_ema: bool = False,
    views: str | None = None,
    ensemble: tuple[str, ...] = (),
) -> dict:
    """Top-1 / top-5 / loss (and per-class accuracy, confusion) of a checkpoint on a split.

    Args:
      config: the training config (e.g. from `load_workdir_config`).
      workdir: the run's directory.
      step: checkpoint step (default: the newest).
      split: dataset split (default: config.data.eval_split).
      image_size: evaluation resolution (default: the config's).
      crop_pct: centre-crop ratio (default: the config's / model's).
      use_ema: evaluate the EMA weights (when the run kept them).
      views: test-time views: None (the config's eval preprocessing), 'center', 'tencrop',
        'multiscale' or 'googlenet'.
      ensemble: further workdirs (newest checkpoints, their own configs) whose probabilities
        are averaged with this one's; they must predict the same classes.
    """
    config = ml_collections.ConfigDict(config.to_dict())
    if crop_pct is not None:
        config.data.crop_pct = crop_pct
    exp, state = restore_state(config, workdir, step)
    members = [Member(workdir, exp.model.apply, state.eval_variables(ema=use_ema))]
    for other in ensemble:
        other_exp, other_state = restore_state(load_workdir_config(other), other)
        if other_exp.model.num_classes != exp.model.num_classes:
            raise ConfigError(
                f"Ensemble member {other} predicts {other_exp.model.num_classes} classes, "
                f"{workdir} predicts {exp.model.num_classes}."
            )
        members.append(Member(other, other_exp.model.apply, other_state.eval_variables(use_ema)))
    pp = view_pp(views, config.data.eval_pp)
    eval_input = make_eval_input(exp, split=split, image_size=image_size, pp=pp)
    results = evaluate_members(members, eval_input, exp.mesh)
    results.update(
        {
            "step": int(jax.device_get(state.step)),
            "split": eval_input.split,
            "image_size": eval_input.ctx.image_size,
            "crop_pct": exp.crop_pct,
            "model": exp.spec.name,
            "ema": use_ema,
            "pp": pp,
        }
    )
    return results
