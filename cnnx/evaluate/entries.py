"""Evaluators as config entries: `config.evals.<name>`, their schema and their resolution.

An entry names its evaluator type (`EVALUATOR_OPTIONS`, the keys of
`cnnx.evaluate.registry.EVALUATORS`), its data (source, split, pp, image size, crop ratio:
unset fields are the run's eval values), its cadence and its options; metrics are logged as
'<name>/top1', ... The run's own eval split is always the evaluator `DEFAULT` ('eval', built
from the `data` and `eval` sections, so configs without `evals` evaluate exactly as before);
an `evals.eval` entry changes its settings. [big_vision `evaluators/common.py:from_config`]

Imports neither TensorFlow nor JAX: configs build entries with `evaluator()`, and the checks
run before anything is compiled.
"""

import dataclasses
import math
import re

import ml_collections
from ml_collections import config_dict

from cnnx.config_schema import SOURCE_KINDS
from cnnx.errors import ConfigError

DEFAULT = "eval"
# Evaluator type -> its options and their defaults.
EVALUATOR_OPTIONS = {
    # per_class: per-class top-1 (an .npz of arrays beside results.json and eval.py's JSON).
    # labels: 'single' (one label per image) or 'real' (ImageNet-ReaL's label sets: a
    #   prediction in the set is right; images without labels are left out; no loss / NLL
    #   or confusion matrix, undefined for label sets: `metrics.multi_label_sums`).
    # class_subset: '' or 'imagenet_a' / 'imagenet_r': logits restricted to that 200-class
    #   subset of ImageNet's 1000 before the argmax and the softmax.
    "classification": {"per_class": False, "labels": "single", "class_subset": ""},
}
DATA_KEYS = ("source", "data_dir", "split", "pp", "image_size", "crop_pct")
ENTRY_KEYS = ("type", "data", "every_steps", "every_epochs", "options")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*$")


def evaluator(kind: str = "classification", **values) -> ml_collections.ConfigDict:
    """One `config.evals` entry with every field (unset: the run's value), so that overrides
    such as `--config.evals.v2.every_steps=500` type-check in a locked config.

    Args:
      kind: the evaluator type (a key of EVALUATOR_OPTIONS).
      **values: `data` (a dict of DATA_KEYS), `options` (a dict of the type's options),
        `every_steps` or `every_epochs` (default: `eval.every_steps`, else once per epoch;
        every evaluator also runs after the last step; `every_steps=0`: only then).

    Returns:
      The entry: {type, data: {source, data_dir, split, pp, image_size, crop_pct},
      every_steps, every_epochs, options}.

    Raises:
      ConfigError: an unknown type or field, naming the valid ones.
    """
    if kind not in EVALUATOR_OPTIONS:
        raise ConfigError(f"Unknown evaluator type {kind!r}; use one of {list(EVALUATOR_OPTIONS)}.")
    e = ml_collections.ConfigDict()
    e.type = kind
    e.data = ml_collections.ConfigDict()
    for key in ("source", "data_dir", "split", "pp"):
        e.data[key] = config_dict.placeholder(str)
    e.data.image_size = config_dict.placeholder(int)
    e.data.crop_pct = config_dict.placeholder(float)
    e.every_steps = config_dict.placeholder(int)
    e.every_epochs = config_dict.placeholder(float)
    e.options = ml_collections.ConfigDict(EVALUATOR_OPTIONS[kind])
    unknown = [k for k in values if k not in ENTRY_KEYS or k == "type"]
    for section in ("data", "options"):
        unknown += [f"{section}.{k}" for k in values.get(section) or {} if k not in e[section]]
    if unknown:
        raise ConfigError(f"Unknown evaluator field(s) {unknown}; {_fields(kind)}.")
    for key, value in values.items():
        if key in ("data", "options"):
            e[key].update(value)
        else:
            e[key] = value
    return e


def add_entries(config, new: dict) -> None:
    """Adds (or replaces) evaluator entries {name: `evaluator(...)`} in `config.evals`, in
    place, creating the section for a config saved before evaluators were entries."""
    with config.unlocked():
        if config.get("evals") is None:
            config.evals = ml_collections.ConfigDict()
        for name, entry in new.items():
            config.evals[name] = entry


def _fields(kind: str) -> str:
    return (
        f"a {kind!r} evaluator has every_steps, every_epochs, data.{{{', '.join(DATA_KEYS)}}} "
        f"and options.{{{', '.join(EVALUATOR_OPTIONS[kind])}}}"
    )


def _bad_value(key: str, v) -> str | None:
    """What `v` must be for the entry field `key`, or None when it is fine."""
    if v is None and key not in ("options.labels", "options.class_subset", "options.per_class"):
        return None
    is_int = isinstance(v, int) and not isinstance(v, bool)
    if key == "every_steps":
        return None if is_int and v >= 0 else "an integer >= 0 (0: after the last step only)"
    if key == "data.image_size":
        return None if is_int and v >= 1 else "an integer >= 1 (or unset)"
    if key in ("every_epochs", "data.crop_pct"):
        ok = (is_int or isinstance(v, float)) and math.isfinite(v) and v > 0
        return None if ok else "a finite number > 0 (or unset)"
    if key == "data.source":
        ok = isinstance(v, str) and v.partition(":")[0] in SOURCE_KINDS
        return None if ok else "'digits', 'synthetic', 'folder:<path>' or 'tfds:<name>'"
    if key in ("data.data_dir", "data.split", "data.pp"):
        return None if isinstance(v, str) and v.strip() else "a non-empty string (or unset)"
    if key == "options.per_class":
        return None if isinstance(v, bool) else "True or False"
    if key == "options.labels":
        return None if v in ("single", "real") else "'single' or 'real'"
    if key == "options.class_subset":
        return None if v in ("", "imagenet_a", "imagenet_r") else "'', 'imagenet_a' or 'imagenet_r'"
    return None


def check(config) -> None:
    """Checks every `config.evals` entry: its name, type, keys and values.

    Raises:
      ConfigError: naming every bad entry field and what it must be (an unknown type or key
        names the valid ones).
    """
    problems = []
    for name, e in (config.get("evals") or {}).items():
        at = f"--config.evals.{name}"
        if not _NAME.match(name) or name == "train" or name.endswith("_ema"):
            problems.append(
                f"{at}: an evaluator's name is a letter, then letters, digits or '_', not "
                "'train' and not ending in '_ema' (its metrics are '<name>/top1', ...)"
            )
        if not hasattr(e, "keys"):
            problems.append(f"{at}={e!r} must be an entry made by evaluator()")
            continue
        kind = e.get("type")
        if kind not in EVALUATOR_OPTIONS:
            problems.append(f"{at}.type={kind!r} must be one of {list(EVALUATOR_OPTIONS)}")
            continue
        valid = {"": ENTRY_KEYS, "data": DATA_KEYS, "options": tuple(EVALUATOR_OPTIONS[kind])}
        for section, keys in valid.items():
            node = e.get(section) if section else e
            if node is None:
                continue
            if not hasattr(node, "keys"):
                problems.append(f"{at}.{section} must be a dict of {', '.join(keys)}")
                continue
            for key in node:
                dotted = f"{section}.{key}" if section else key
                if key not in keys:
                    problems.append(f"{at}.{dotted} is unknown: {_fields(kind)}")
                elif section and (why := _bad_value(dotted, node[key])):
                    problems.append(f"{at}.{dotted}={node[key]!r} must be {why}")
                elif not section and (why := _bad_value(key, node[key])):
                    problems.append(f"{at}.{key}={node[key]!r} must be {why}")
        if e.get("every_steps") is not None and e.get("every_epochs") is not None:
            problems.append(f"{at}: set every_steps or every_epochs, not both")
    if problems:
        raise ConfigError("Invalid evaluator entries: " + "; ".join(problems) + ".")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One evaluator, every field resolved against the run's config.

    Attributes:
      name: its name; metrics are '<name>/top1', ...
      type: a key of `cnnx.evaluate.registry.EVALUATORS`.
      data: the `data` section to build its source from (`cnnx.data.get_source`): the run's,
        with `source` / `data_dir` replaced where the entry sets them.
      own_source: whether `data` names another source than the run's.
      split, pp: its split and preprocessing.
      image_size, crop_pct: its resolution and centre-crop ratio (None: the run's).
      every_steps, every_epochs: its cadence (both None: `eval.every_steps` or once per epoch).
      options: the type's options.
    """

    name: str
    type: str
    data: dict
    own_source: bool
    split: str
    pp: str
    image_size: int | None
    crop_pct: float | None
    every_steps: int | None
    every_epochs: float | None
    options: dict

    def every(self, steps_per_epoch: int) -> int:
        """Steps between its periodic evaluations (>= 1), or 0: after the last step only."""
        if self.every_steps is not None:
            return self.every_steps
        if self.every_epochs:
            return max(1, round(self.every_epochs * steps_per_epoch))
        return steps_per_epoch


def resolve(config, names=None) -> list[Entry]:
    """The run's evaluators: 'eval' first, then the `evals` entries in name order.

    Args:
      config: the run's config (checked by `check` first).
      names: only these evaluators, in this order (eval.py's --evals); None: all.

    Raises:
      ConfigError: a bad entry (`check`), or a name in `names` that the config lacks (naming
        the ones it has).
    """
    check(config)
    d = config.data
    entries = dict(config.get("evals") or {})
    order = [DEFAULT, *sorted(n for n in entries if n != DEFAULT)]
    if names is not None:
        missing = [n for n in names if n not in order]
        if missing:
            from cnnx.evaluate.named_sets import IMAGENET_TEST_SETS  # it imports this module

            raise ConfigError(
                f"--evals={','.join(names)}: no evaluator {', '.join(map(repr, missing))} in "
                f"this config; it has {', '.join(order)}; eval.py also runs the named test "
                f"sets {', '.join(IMAGENET_TEST_SETS)} (cnnx/evaluate/named_sets.py) and the "
                "entries of an --evaluators=FILE."
            )
        order = list(dict.fromkeys(names))
    out = []
    for name in order:
        e = entries.get(name) or evaluator()
        data = e.data
        own = {k: data[k] for k in ("source", "data_dir") if data.get(k) is not None}
        source_data = {**d.to_dict(), **own}
        every_steps = e.every_steps
        if every_steps is None and e.every_epochs is None:
            every_steps = config.eval.every_steps
        out.append(
            Entry(
                name=name,
                type=e.type,
                data=source_data,
                own_source=any(own.get(k) != d.get(k) for k in own),
                split=data.split or d.eval_split,
                pp=data.pp or d.eval_pp,
                image_size=data.image_size,
                crop_pct=data.crop_pct,
                every_steps=every_steps,
                every_epochs=e.every_epochs,
                options=dict(e.options),
            )
        )
    return out
