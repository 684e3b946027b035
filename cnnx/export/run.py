"""A trained run as the exporters need it: model, variables and evaluation preprocessing.

Read from a workdir's `config.json` (the run's identity) and one of its checkpoints, without
the data: the head size and input channels, which training takes from the data source, are
read off the checkpoint's own arrays when config.json does not state them. Imports neither
TensorFlow nor torch, so either can be imported next (torch after TensorFlow segfaults in
some environments).
"""

import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp
from etils import epath
from flax import traverse_util

from cnnx import models
from cnnx.errors import CheckpointMismatch, ConfigError
from cnnx.models.registry import options as model_options
from cnnx.train.experiment import compute_dtype

# Options that only shape training: rematerialisation recomputes the same forward pass.
_TRAINING_ONLY = ("remat", "remat_policy")


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """One checkpoint of a run, with what evaluating it takes.

    Attributes:
      name: cnnx registry name.
      options: the model's constructor options (`num_classes` included; `dtype` as a name).
      variables: `{'params': ..., 'batch_stats': ...}` as host arrays.
      config: the run's config.json, as a dict.
      eval_image_size: side of the square images evaluation feeds the model (pixels).
      crop_pct: evaluation's centre-crop ratio (`resize_crop`).
      eval_pp: evaluation's preprocessing string (`"resize_crop|normalize"`).
      mean, std: normalisation of pixels / 255, per channel (or one value for all).
      channels: input channels (1: grey, 3: RGB).
      step, ema: which checkpoint (None: the newest) and whether its EMA weights.
    """

    name: str
    options: dict
    variables: dict
    config: dict
    eval_image_size: int
    crop_pct: float
    eval_pp: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int
    step: int | None = None
    ema: bool = False

    def model(self):
        """The Flax module (unbound), computing in the run's dtype."""
        return _module(self.name, self.options)

    def preprocessing(self) -> dict[str, Any]:
        """The evaluation input contract, for the files written beside an export."""
        return {
            "eval_pp": self.eval_pp,
            "image_size": self.eval_image_size,
            "crop_pct": self.crop_pct,
            "mean": list(self.mean),
            "std": list(self.std),
            "channels": self.channels,
            "pixels": "uint8 RGB (grey for 1 channel), normalised as (x / 255 - mean) / std",
        }


def _module(name: str, options: dict):
    # Trainers record the dtype they chose; a config.json left at 'auto' resolves as they do.
    dtype = compute_dtype(options.get("dtype", "float32"), "config.json's model.dtype")
    return models.create(name, **{**options, "dtype": dtype})


def _shapes(name: str, options: dict, channels: int, size: int) -> dict:
    model = _module(name, options)
    x = jnp.zeros((1, size, size, channels))
    tree = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
    return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(dict(tree)).items()}


def _read_off(saved: dict, make, default: int) -> int:
    """The value of one size option (head size, channels) the checkpoint's arrays have: the
    arrays whose shapes change between option values 1 and 2 carry it (`default` when none
    is in the checkpoint: it is of another model, which the caller's check then reports)."""
    one, two = make(1), make(2)
    for path, shape in one.items():
        if shape != two[path] and len(saved.get(path, ())) == len(shape):
            axis = next(i for i, (a, b) in enumerate(zip(shape, two[path])) if a != b)
            return saved[path][axis]
    return default


def load_run(workdir: str, step: int | None = None, ema: bool = False) -> TrainedRun:
    """The model, variables and evaluation preprocessing of a workdir's checkpoint.

    Args:
      workdir: a cnnx run directory (config.json and checkpoints/), local or gs://.
      step: checkpoint step (None: the newest).
      ema: the EMA weights instead of the raw ones.

    Returns:
      The `TrainedRun`.

    Raises:
      ConfigError: no config.json in `workdir`.
      WorkdirError: config.json unreadable.
      CheckpointError: no checkpoint (or no step `step`), a damaged one, or `ema` of a run
        that kept none.
      CheckpointMismatch: the checkpoint's arrays do not fit the model config.json names.
    """
    from cnnx.train import checkpoint
    from cnnx.train import workdir as wd

    saved = wd.load_saved_config(workdir)
    if saved is None:
        raise ConfigError(f"{wd.config_path(workdir)} not found: is {workdir!r} a cnnx workdir?")
    variables = checkpoint.load_variables(workdir, step, ema)
    model, data = saved.get("model", {}), saved.get("data", {})
    name = model["name"]
    spec = models.get_spec(name)
    fields = model_options(spec)
    options = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in model.items()
        if k != "name" and k not in _TRAINING_ONLY and k in fields and v is not None
    }
    size = data.get("eval_image_size") or data.get("image_size") or spec.eval_resolution
    have = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(variables).items()}
    channels = data.get("channels") or spec.in_chans
    if "num_classes" not in options:  # training took it from the data
        options["num_classes"] = _read_off(
            have,
            lambda n: _shapes(name, {**options, "num_classes": n}, channels, size),
            spec.num_classes,
        )
    want = _shapes(name, options, channels, size)
    if want != have and not data.get("channels"):  # the data's own channels (digits: grey)
        channels = _read_off(have, lambda c: _shapes(name, options, c, size), channels)
        want = _shapes(name, options, channels, size)
    if want != have:
        diff = sorted("/".join(p) for p in want.keys() ^ have.keys())
        diff += sorted(
            f"{'/'.join(p)} {have[p]} != {s}" for p, s in want.items() if have.get(p, s) != s
        )
        raise CheckpointMismatch(
            f"The checkpoint in {workdir} does not fit {name} as its config.json describes it: "
            + "; ".join(diff[:10])
        )
    return TrainedRun(
        name=name,
        options=options,
        variables=variables,
        config=saved,
        eval_image_size=int(size),
        crop_pct=float(data.get("crop_pct") or spec.crop_pct),
        eval_pp=data.get("eval_pp", "resize_crop|normalize"),
        mean=tuple(data.get("mean", spec.mean)),
        std=tuple(data.get("std", spec.std)),
        channels=int(channels),
        step=step,
        ema=ema,
    )


def sidecar_path(output: str) -> str:
    """Where an export's description goes: `<output>.json` (`r50.pth.json`), so the weights
    and the serving artefact of one run, side by side, keep one each."""
    return output + ".json"


def write_export(output: str, data: bytes, description: dict) -> None:
    """Writes an export (local or gs://) and its description beside it (`sidecar_path`)."""
    epath.Path(output).parent.mkdir(parents=True, exist_ok=True)
    epath.Path(output).write_bytes(data)
    epath.Path(sidecar_path(output)).write_text(json.dumps(description, indent=2) + "\n")
