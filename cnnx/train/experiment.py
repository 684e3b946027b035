"""Everything a config implies before the first step: data source, model, mesh, shapes.

Shared by training and evaluation, and done before any compilation so that bad input (unknown
model, missing data, a batch that does not split over the devices) fails in seconds with a
clear message.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from cnnx import models
from cnnx.data import PPContext, Source, get_source
from cnnx.errors import ConfigError
from cnnx.layers.remat import POLICIES as REMAT_POLICIES
from cnnx.models.registry import ModelSpec, model_fields
from cnnx.train.config import validate
from cnnx.train.mesh import check_batch, mesh_from_config
from cnnx.train.sharding import parse_rules

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# Config keys of the `model` section that are not model constructor arguments.
_NOT_MODEL_ARGS = ("name",)


@dataclasses.dataclass
class Experiment:
    config: ml_collections.ConfigDict
    spec: ModelSpec
    source: Source
    model: object
    mesh: Mesh
    image_size: int
    eval_image_size: int
    crop_pct: float
    channels: int

    def pp_context(self, train: bool, image_size: int | None = None) -> PPContext:
        d = self.config.data
        size = image_size or (self.image_size if train else self.eval_image_size)
        return PPContext(
            image_size=size,
            crop_pct=self.crop_pct,
            mean=tuple(d.mean),
            std=tuple(d.std),
            channels=self.channels,
        )

    @property
    def input_shape(self):
        return (1, self.image_size, self.image_size, self.channels)


def model_kwargs(config, num_classes: int) -> dict:
    """Constructor arguments from the `model` config section (unset placeholders skipped)."""
    kwargs = {k: v for k, v in config.model.items() if k not in _NOT_MODEL_ARGS and v is not None}
    if "dtype" in kwargs:
        if kwargs["dtype"] not in _DTYPES:
            raise ConfigError(
                f"--config.model.dtype={kwargs['dtype']!r}: use one of {sorted(_DTYPES)}."
            )
        kwargs["dtype"] = _DTYPES[kwargs["dtype"]]
    policy = kwargs.pop("remat_policy", None)
    if policy is not None:
        if policy not in REMAT_POLICIES:
            raise ConfigError(
                f"--config.model.remat_policy={policy!r}: use one of {', '.join(REMAT_POLICIES)}."
            )
        if not kwargs.get("remat"):
            raise ConfigError(
                f"--config.model.remat_policy={policy!r} needs --config.model.remat=True."
            )
        kwargs["remat"] = policy
    kwargs.setdefault("num_classes", num_classes)
    return kwargs


def build_model(config, num_classes: int):
    spec = models.get_spec(config.model.name)
    kwargs = model_kwargs(config, num_classes)
    fields = model_fields(spec.builder)
    # Options a family does not have are dropped only when left at their neutral defaults.
    for key, neutral in (("drop_path_rate", 0.0), ("dropout_rate", None), ("remat", False)):
        if key in kwargs and key not in fields and kwargs[key] in (neutral, 0.0):
            kwargs.pop(key)
    if kwargs.get("remat") and "remat" not in fields:
        specs = map(models.get_spec, models.list_models())
        with_remat = sorted({s.family for s in specs if "remat" in model_fields(s.builder)})
        raise ConfigError(
            f"--config.model.remat: {spec.name} ({spec.family}) has no per-block "
            f"rematerialisation; the families that have it: {', '.join(with_remat)}."
        )
    return spec, models.create(config.model.name, **kwargs)


def setup(config: ml_collections.ConfigDict) -> Experiment:
    """Validates the config and builds the experiment's static parts."""
    validate(config)  # every value in range, before anything is built
    spec = models.get_spec(config.model.name)  # unknown model: clear error first
    d = config.data
    image_size = d.image_size or spec.resolution
    eval_image_size = d.eval_image_size or d.image_size or spec.eval_resolution
    if min(image_size, eval_image_size) < spec.min_resolution:
        raise ConfigError(
            f"{spec.name} needs inputs of at least {spec.min_resolution} px; got "
            f"image_size={image_size}, eval_image_size={eval_image_size}."
        )
    mesh = mesh_from_config(config.mesh)
    parse_rules(config.mesh.get("rules"))  # bad regexes and axis names fail here
    check_batch(config.train.batch_size, mesh, "train.batch_size")
    check_batch(config.eval.batch_size, mesh, "eval.batch_size")
    source = get_source(
        d.source,
        data_dir=d.data_dir,
        download=d.download,
        num_classes=d.num_classes or 10,
        image_size=image_size,
        on_corrupt=d.get("on_corrupt", "skip"),
    )
    num_classes = config.model.get("num_classes") or source.num_classes
    spec, model = build_model(config, num_classes)
    # Arrays know their channels (digits: 1); decoded files follow the model (RGB: 3).
    channels = d.channels or getattr(source, "channels", None) or spec.in_chans
    stored = getattr(source, "channels", None)
    if d.channels and stored and d.channels != stored:
        raise ConfigError(
            f"--config.data.channels={d.channels}, but the images of {source.name} have "
            f"{stored} channel(s); leave it unset (the model then takes {stored})."
        )
    for key in ("mean", "std"):
        if len(d[key]) not in (1, channels):
            raise ConfigError(
                f"--config.data.{key}={tuple(d[key])} has {len(d[key])} values for {channels}-"
                f"channel inputs; give one value" + (f" or {channels}." if channels > 1 else ".")
            )
    check_input_size(spec, model, channels, image_size, eval_image_size)
    return Experiment(
        config=config,
        spec=spec,
        source=source,
        model=model,
        mesh=mesh,
        image_size=image_size,
        eval_image_size=eval_image_size,
        crop_pct=d.crop_pct or spec.crop_pct,
        channels=channels,
    )


def check_input_size(spec: ModelSpec, model, channels: int, *sizes: int) -> None:
    """Fails before any compilation when the model cannot take an input size.

    `spec.min_resolution` (checked first) is the documented minimum; this traces the model
    abstractly (`jax.eval_shape`: shapes only, no compilation, no FLOPs) at each size that the
    registry tests do not already cover, so width/depth overrides, odd sizes and models whose
    minimum is not a simple bound (patch or window divisibility) also fail with a clear
    message instead of an error from inside a layer.
    """
    known = {spec.resolution, spec.eval_resolution, spec.test_resolution}
    todo = sorted({s for s in sizes if s not in known})
    if not todo:
        return
    rng = jax.random.PRNGKey(0)
    for size in todo:
        x = jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)
        try:
            jax.eval_shape(lambda x: model.init(rng, x, train=False), x)
        except Exception as e:  # any layer's complaint means: this input does not fit
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            raise ConfigError(
                f"{spec.name} cannot take {size}x{size} inputs with {channels} channel(s) "
                f"({type(e).__name__}: {first}). Its documented minimum is "
                f"{spec.min_resolution} px and it was built for {spec.resolution} px; change "
                "--config.data.image_size / eval_image_size (or the model's width/depth)."
            ) from None


def check_step_counts(config, steps_per_epoch: int, total_steps: int) -> None:
    """Lengths given in epochs, turned into steps, must fit the int32 step counter."""
    limit = 2**31 - 1
    s = config.schedule
    counts = {
        "train.num_epochs / num_steps": total_steps,
        "schedule.warmup_epochs": round(s.get("warmup_epochs", 0) * steps_per_epoch),
        "schedule.decay_every_epochs": round(s.get("decay_every_epochs", 1) * steps_per_epoch),
        "schedule.decay_epochs": max(
            (round(e * steps_per_epoch) for e in s.get("decay_epochs", ())), default=0
        ),
    }
    for key, n in counts.items():
        if n > limit:
            raise ConfigError(
                f"--config.{key} comes to {n:,} steps ({steps_per_epoch} per epoch); steps are "
                f"counted in int32, at most {limit:,}. Lower it."
            )


def process_info() -> tuple[int, int]:
    return jax.process_index(), jax.process_count()
