"""A trial's config as it will run: sizes a scaling rule derives, snapped to what the model takes.

A scaling rule computes input sizes (the compound-scaling grid's round(R·γ), φ's R·γ^φ, a
FixRes test size) without knowing the layers: γ = 1.1 turns LeNet-5's 32 px into 35, which its
stride-2 VALID layers would crop, so the run's input check (`cnnx.train.experiment.
check_input_size`) refuses it. A sweep file names the config keys whose values a rule derives
(`options['derived_sizes']`, e.g. `['data.image_size']`); `trial_config` replaces each by the
nearest size the trial's model accepts (`experiment.nearest_input_size`) and returns what it
changed, which the trial's record keeps (`snapped`: {key: [rule's size, size used]}). Sizes a
user sets by hand are never changed: a refused one stays an error.
"""

import ml_collections

from cnnx.sweeps.spec import Sweep, Trial, apply_overrides


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def _set(config, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value


def _model(config: ml_collections.ConfigDict):
    """(spec, model, channels) of the `model` section, without opening the data: the class
    count and the channels do not move pixels, so the registry's are used where unset."""
    from cnnx.models import get_spec
    from cnnx.train.experiment import build_model

    spec = get_spec(config.model.name)
    classes = config.model.get("num_classes") or config.data.get("num_classes") or spec.num_classes
    spec, model = build_model(config, classes)
    return spec, model, config.data.get("channels") or spec.in_chans


def accepted_size(config: ml_collections.ConfigDict, size: int) -> int:
    """The size nearest to `size` that `config`'s model (its width, depth, patches) accepts.

    Raises:
      ConfigError: an unknown model, or no accepted size near `size`.
    """
    from cnnx.train.experiment import nearest_input_size

    spec, model, channels = _model(config)
    return nearest_input_size(spec, model, channels, int(size))


def trial_config(sweep: Sweep, trial: Trial) -> tuple[ml_collections.ConfigDict, dict]:
    """The trial's config (base + overrides) with its derived sizes snapped.

    Returns:
      (config, snapped): snapped maps each changed key to [the rule's size, the size used]
      ({} when every derived size was accepted as it is).

    Raises:
      ConfigError: an override that does not fit, or a derived size with no accepted size
        near it.
    """
    config = apply_overrides(sweep.base, trial.overrides)
    snapped = {}
    for key in sweep.derived_sizes:
        asked = _get(config, key)
        if not asked:
            continue  # unset: the model's own resolution
        used = accepted_size(config, asked)
        if used != asked:
            _set(config, key, used)
            snapped[key] = [asked, used]
    return config, snapped


def check_trial(sweep: Sweep, trial: Trial) -> tuple[dict, str | None]:
    """Everything `setup` checks for the trial, without training (`scripts/sweep.py --dry_run`).

    Data that is not on this machine (ImageNet, planned from a laptop) is not the config's
    fault: the config, the model and its input sizes are then checked without it. Each size
    is traced once (a grid of 109 EfficientNet trials is checked in minutes, not tens).

    Returns:
      (snapped sizes as `trial_config`'s, None or the first line of the data's error).

    Raises:
      CnnxError: what the trial's run would fail on before its first step.
    """
    from cnnx.errors import ConfigError, DataError
    from cnnx.train.experiment import check_input_size, setup

    data = None
    try:
        setup(apply_overrides(sweep.base, trial.overrides))
        return {}, None  # every size accepted as it is: nothing to snap
    except DataError as e:
        data = str(e).splitlines()[0]
    except ConfigError:
        if not sweep.derived_sizes:
            raise
    config, snapped = trial_config(sweep, trial)  # traces the derived sizes
    if data is None:
        setup(config)
        return snapped, None
    spec, model, channels = _model(config)
    size = config.data.image_size or spec.resolution
    rest = {size, config.data.eval_image_size or size}
    rest -= {_get(config, k) for k in sweep.derived_sizes}
    if rest:
        check_input_size(spec, model, channels, *rest)
    return snapped, data
