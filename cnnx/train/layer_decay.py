"""Layer-wise learning-rate decay (`optim.layer_decay`): a rate per depth, the head's the highest.

BEiT (Bao et al. 2022, `LayerDecayValueAssigner`) and timm (`--layer-decay`,
`param_groups_layer_decay`) fine-tune with the head at the full rate and each depth below it at
`decay` times the rate of the depth above. The depths come from the family's `LayerGroups`
(`cnnx.models.layer_groups`, declared on its specs); this module turns them into a stateless
optax transformation that multiplies each parameter's update by its multiplier. Scaling the
update rather than the rate works with every optimizer and schedule: each of them is linear in
the rate (momentum buffers and decoupled weight decay included), as timm's per-group
`lr_scale` is applied to the whole step.

It wraps the optimizer outside `finetune.partition_optimizer`, so the regex multiplier
(`train.lr_mult_pattern`) and frozen parameters (`train.trainable`) combine with it by product.
"""

import collections
import re

import jax
import optax
from absl import logging
from flax import traverse_util

from cnnx import models
from cnnx.errors import ConfigError
from cnnx.models.layer_groups import LayerGroups, lr_multipliers


def _path(key_path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in key_path)


def layer_groups_of(model_name: str) -> LayerGroups:
    """The family's depth rules of a registered model.

    Raises:
      ConfigError: the family declares none (layer decay would be meaningless for it).
    """
    spec = models.get_spec(model_name)
    if spec.layer_groups is None:
        specs = map(models.get_spec, models.list_models())
        declared = sorted({s.family for s in specs if s.layer_groups is not None})
        raise ConfigError(
            f"--config.optim.layer_decay is set, but the {spec.family} family ({model_name}) "
            "declares no layer groups (register_family(..., layer_groups=...)); unset it, or "
            f"use a family that declares them: {', '.join(declared)}."
        )
    return spec.layer_groups


def scale_by_layer_decay(groups: LayerGroups, decay: float) -> optax.GradientTransformation:
    """Multiplies each update by `decay ** (n - 1 - depth)` (`lr_multipliers`).

    Stateless: the multipliers are Python constants computed from the update tree's paths when
    the step is traced, so checkpoints hold no extra state.

    Args:
      groups: the family's depth rules.
      decay: the per-depth factor, in (0, 1].

    Returns:
      An optax transformation to chain after the optimizer.
    """

    def update(updates, state, params=None):
        del params
        with_paths = jax.tree_util.tree_flatten_with_path(updates)[0]
        mult = lr_multipliers(groups, [_path(p) for p, _ in with_paths], decay)
        scaled = jax.tree_util.tree_map_with_path(
            lambda p, u: u * jax.numpy.asarray(mult[_path(p)], u.dtype), updates
        )
        return scaled, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def with_layer_decay(tx: optax.GradientTransformation, config) -> optax.GradientTransformation:
    """`tx` followed by layer-wise decay when `config.optim.layer_decay` is set, else `tx`.

    Raises:
      ConfigError: layer decay asked of a family without `LayerGroups`.
    """
    decay = config.optim.get("layer_decay")
    if decay is None:
        return tx
    return optax.chain(tx, scale_by_layer_decay(layer_groups_of(config.model.name), decay))


def effective_multipliers(config, params) -> dict[str, float]:
    """Each parameter's multiplier of the scheduled rate: layer decay times `train.lr_mult`
    where `train.lr_mult_pattern` matches, 0 where `train.trainable` does not.

    Args:
      config: the run's config.
      params: the parameter tree (arrays or shape structs).

    Returns:
      '/'-joined path -> multiplier.
    """
    paths = ["/".join(k) for k in traverse_util.flatten_dict(params)]
    decay = config.optim.get("layer_decay")
    if decay is None:
        mult = dict.fromkeys(paths, 1.0)
    else:
        mult = lr_multipliers(layer_groups_of(config.model.name), paths, decay)
    t, s = config.train.trainable, config.train.lr_mult_pattern
    for p in paths:
        if t and not re.search(t, p):
            mult[p] = 0.0
        elif s and re.search(s, p):
            mult[p] *= config.train.lr_mult
    return mult


def multiplier_table(config, params) -> list[str]:
    """The lines logged at start: per depth, its multiplier, parameter count and first paths.

    Depths whose parameters have different effective multipliers (a regex multiplier or a
    frozen pattern cutting through them) get one line per multiplier.
    """
    paths = traverse_util.flatten_dict(params)
    sizes = {"/".join(k): int(getattr(v, "size", 0)) for k, v in paths.items()}
    mult = effective_multipliers(config, params)
    decay = config.optim.get("layer_decay")
    if decay is None:
        depth = dict.fromkeys(sizes, 0)
    else:
        depth, _ = layer_groups_of(config.model.name).depths(sizes)
    rows = collections.defaultdict(list)
    for p in sizes:
        rows[(depth[p], mult[p])].append(p)
    lines = [f"{'depth':>5}  {'lr x':>10}  {'params':>11}  first paths"]
    for (d, m), ps in sorted(rows.items()):
        count = sum(sizes[p] for p in ps)
        more = f" (+{len(ps) - 2})" if len(ps) > 2 else ""
        lines.append(f"{d:>5}  {m:>10.4g}  {count:>11,}  {', '.join(ps[:2])}{more}")
    return lines


def log_multipliers(config, params) -> None:
    """Logs `multiplier_table` when layer decay or a regex multiplier is configured."""
    if config.optim.get("layer_decay") is None and not config.train.lr_mult_pattern:
        return
    logging.info(
        "Learning-rate multipliers per depth (layer_decay=%s):\n  %s",
        config.optim.get("layer_decay"),
        "\n  ".join(multiplier_table(config, params)),
    )
