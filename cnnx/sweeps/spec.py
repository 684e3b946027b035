"""Sweep definitions: a base config plus a list of trials, each a dict of dotted overrides.

A sweep file (configs/sweeps/<name>.py) defines `get_sweep(arg)` returning `(base, trials)` or
`(base, trials, options)`:
  * base: an `ml_collections.ConfigDict` (a configs/ recipe or `base_config()`),
  * trials: a list of dicts like `{'model.width_mult': 1.1, 'data.image_size': 256}`; keys that
    start with '_' are labels only (e.g. `'_alpha': 1.2`), stored with the results but not
    applied to the config,
  * options (optional): `{'metric': 'eval/top1', 'mode': 'max'}` — how the best trial is chosen;
    instead of a list of trials, a search: `trials` empty and options
    `{'space': {dotted key: range}, 'sampler': 'tpe', 'n_trials': 20, 'seed': 0}`, where a range
    is `{'low': 1e-3, 'high': 1.0, 'log': True}` (float), `{'low': 1, 'high': 8, 'step': 1}`
    with int bounds (int), or `{'choices': [...]}` (categorical; None, bool, int, float, str).
    `'derived_sizes': ['data.image_size']` names overrides a scaling rule computed: they are
    snapped at run time to the nearest size the trial's model accepts (`cnnx.sweeps.sizes`).
It may also define `report(best, records, arg) -> str`, text appended to the sweep summary (the
EfficientNet grid prints its φ table there).

A trial is identified by a hash of its overrides and the base config (its `key`), not by its
position, so a restarted sweep recognises finished trials even if the list was reordered, and
a changed base (budget, data) never reuses results trained under the old one. Its folder
(`Trial.dirname`) reads the swept values and ends with the key, e.g.
`alpha=1.2,beta=1.1,gamma=1.15-3f2a9c01b2d4`.
"""

import dataclasses
import hashlib
import json
import re
from typing import Any

import ml_collections

from cnnx.cli import load_config_module
from cnnx.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Trial:
    """One point of a sweep.

    Attributes:
      index: position in the sweep's list (a search: the Optuna trial number).
      overrides: dotted config key -> value, applied to the base config.
      tags: labels (the definition's '_'-prefixed keys, without the '_').
      key: stable identity (hash of the overrides and the base config).
    """

    index: int
    overrides: dict
    tags: dict
    key: str

    @property
    def label(self) -> str:
        """'alpha=1.2 beta=1.1 gamma=1.15': the tags, else the overrides' last name parts."""
        items = self.tags or self.overrides
        return " ".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in items.items())

    @property
    def dirname(self) -> str:
        """The trial's folder name: its swept values, then its key (unique, filesystem-safe).

        Named by parameters rather than by an Optuna trial number, so a trial retried after its
        worker died (a new Optuna trial with the same parameters) finds its checkpoint.
        """
        text = ",".join(self.label.split(" "))
        text = re.sub(r"[^A-Za-z0-9=.,_+-]", "_", text)[:80]
        return f"{text}-{self.key}" if text else self.key


@dataclasses.dataclass
class Sweep:
    """A loaded sweep file.

    Attributes:
      ref: the file as given, `path[:arg]`.
      base: the base config every trial overrides.
      trials: the grid (empty for a search).
      metric, mode: the objective ('eval/top1', 'max').
      module, arg: the sweep file's module (its `report`/`highlight` hooks) and arg.
      space: a search's ranges, {dotted key: range dict} (empty for a grid).
      sampler: 'tpe' or 'random' (a search).
      n_trials: a search's trial budget.
      seed: the sampler's seed.
      derived_sizes: config keys holding sizes a rule derived (snapped, `cnnx.sweeps.sizes`).
    """

    ref: str
    base: ml_collections.ConfigDict
    trials: list[Trial]
    metric: str = "eval/top1"
    mode: str = "max"
    module: Any = None
    arg: str | None = None
    space: dict = dataclasses.field(default_factory=dict)
    sampler: str = "tpe"
    n_trials: int = 0
    seed: int | None = None
    derived_sizes: tuple[str, ...] = ()

    @property
    def is_search(self) -> bool:
        return bool(self.space)

    @property
    def total(self) -> int:
        """Trials the sweep runs in all: the grid's size or the search's budget."""
        return self.n_trials if self.is_search else len(self.trials)

    def make_trial(self, overrides: dict, index: int) -> Trial:
        """The grid trial with these overrides, else (a search) a new one tagged by leaf names."""
        key = trial_key(overrides, self.base)
        for t in self.trials:
            if t.key == key:
                return t
        if not self.is_search:
            raise ConfigError(f"{self.ref}: no grid trial has the overrides {overrides}")
        tags = {k.split(".")[-1]: v for k, v in overrides.items()}
        return Trial(index=index, overrides=dict(overrides), tags=tags, key=key)


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def trial_key(overrides: dict, base: ml_collections.ConfigDict | None = None) -> str:
    """A short, stable hash of a trial's overrides and its base config (order-independent).

    The base config is part of the identity: changing the sweep's budget or data makes new
    trials rather than silently reusing results trained under the old settings.
    """
    blob = {"overrides": overrides}
    if base is not None:
        blob["base"] = base.to_dict()
    text = json.dumps(blob, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def load_config(ref: str) -> ml_collections.ConfigDict:
    """`get_config(arg)` of a configs/ file given as `path[:arg]`."""
    module, arg = load_config_module(ref)
    return module.get_config(arg) if arg is not None else module.get_config()


def apply_overrides(base: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
    """A copy of `base` with dotted overrides applied; unknown keys raise `ConfigError`."""
    config = ml_collections.ConfigDict(base.to_dict(preserve_field_references=False))
    config.lock()
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = config
        try:
            for p in parents:
                node = node[p]
            if leaf not in node:
                raise KeyError(leaf)
            node[leaf] = value
        except (KeyError, AttributeError, TypeError) as e:
            raise ConfigError(
                f"sweep override {dotted}={value!r} does not fit the config: {e}"
            ) from None
    return config


def load_sweep(ref: str) -> Sweep:
    """Loads `path[:arg]` and expands its trials."""
    module, arg = load_config_module(ref)
    if not hasattr(module, "get_sweep"):
        raise ConfigError(f"{ref}: a sweep file must define get_sweep(arg).")
    out = module.get_sweep(arg)
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        raise ConfigError(f"{ref}: get_sweep must return (base, trials) or (base, trials, opts).")
    base, raw, options = (*out, {}) if len(out) == 2 else out
    trials, seen = [], set()
    for i, entry in enumerate(raw):
        overrides = {k: v for k, v in entry.items() if not k.startswith("_")}
        tags = {k[1:]: v for k, v in entry.items() if k.startswith("_")}
        apply_overrides(base, overrides)  # fail fast on a misspelled key
        key = trial_key(overrides, base)
        if key in seen:
            raise ConfigError(f"{ref}: trial {i} repeats an earlier trial ({overrides}).")
        seen.add(key)
        trials.append(Trial(index=i, overrides=overrides, tags=tags, key=key))
    space = dict(options.get("space") or {})
    if space and trials:
        raise ConfigError(f"{ref}: give either a list of trials or a search 'space', not both.")
    if not space and not trials:
        raise ConfigError(f"{ref}: no trials and no search 'space'.")
    for dotted, rng in space.items():
        _check_range(ref, dotted, rng)
        apply_overrides(base, {dotted: rng["choices"][0] if "choices" in rng else rng["low"]})
    n_trials = int(options.get("n_trials", 0))
    if space and n_trials < 1:
        raise ConfigError(f"{ref}: a search needs a trial budget, options['n_trials'] >= 1.")
    mode = options.get("mode", "max")
    if mode not in ("max", "min"):
        raise ConfigError(f"{ref}: mode must be 'max' or 'min', not {mode!r}.")
    metric = options.get("metric", "eval/top1")
    _check_metric(ref, metric, base)
    sampler = options.get("sampler", "tpe")
    if sampler not in ("tpe", "random"):
        raise ConfigError(f"{ref}: sampler must be 'tpe' or 'random', not {sampler!r}.")
    derived = tuple(options.get("derived_sizes", ()))
    for dotted in derived:
        apply_overrides(base, {dotted: 1})  # a misspelled key fails at load
    return Sweep(
        ref=ref,
        base=base,
        trials=trials,
        metric=metric,
        mode=mode,
        module=module,
        arg=arg,
        space=space,
        sampler=sampler,
        n_trials=n_trials,
        seed=options.get("seed"),
        derived_sizes=derived,
    )


def _check_metric(ref: str, metric, base) -> None:
    """The objective must be a metric the trials log: 'train/...' or '<evaluator>/...' of one
    of the base config's evaluators ('eval' and `evals` entries, '<name>_ema' for EMA runs)."""
    names = ["eval", *(base.get("evals") or {})]
    prefix = metric.partition("/")[0] if isinstance(metric, str) else None
    if prefix in ("train", *names, *(f"{n}_ema" for n in names)) and "/" in metric:
        return
    raise ConfigError(
        f"{ref}: options['metric']={metric!r} is no metric the trials log; use 'train/loss' or "
        f"'<evaluator>/<top1|top5|loss|nll|ece>' with an evaluator of {names}."
    )


def _check_range(ref: str, dotted: str, rng) -> None:
    ok = isinstance(rng, dict) and (
        ("choices" in rng and len(rng["choices"]) > 0)
        or ("low" in rng and "high" in rng and rng["low"] <= rng["high"])
    )
    if not ok:
        raise ConfigError(
            f"{ref}: search range {dotted}={rng!r}: use {{'low': a, 'high': b}} (optionally "
            "'log': True or 'step': s) or {'choices': [...]}."
        )
