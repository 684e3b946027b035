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
from cnnx.models.registry import ModelSpec, model_fields
from cnnx.train.mesh import check_batch, make_mesh

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
    kwargs.setdefault("num_classes", num_classes)
    return kwargs


def build_model(config, num_classes: int):
    spec = models.get_spec(config.model.name)
    kwargs = model_kwargs(config, num_classes)
    fields = model_fields(spec.builder)
    # Options a family does not have are dropped only when left at their neutral defaults.
    for key, neutral in (("drop_path_rate", 0.0), ("dropout_rate", None)):
        if key in kwargs and key not in fields and kwargs[key] in (neutral, 0.0):
            kwargs.pop(key)
    return spec, models.create(config.model.name, **kwargs)


def setup(config: ml_collections.ConfigDict) -> Experiment:
    """Validates the config and builds the experiment's static parts."""
    spec = models.get_spec(config.model.name)  # unknown model: clear error first
    d = config.data
    image_size = d.image_size or spec.resolution
    eval_image_size = d.eval_image_size or d.image_size or spec.eval_resolution
    if min(image_size, eval_image_size) < spec.min_resolution:
        raise ConfigError(
            f"{spec.name} needs inputs of at least {spec.min_resolution} px; got "
            f"image_size={image_size}, eval_image_size={eval_image_size}."
        )
    mesh = make_mesh(config.mesh.data)
    check_batch(config.train.batch_size, mesh, "train.batch_size")
    check_batch(config.eval.batch_size, mesh, "eval.batch_size")
    source = get_source(
        d.source,
        data_dir=d.data_dir,
        download=d.download,
        num_classes=d.num_classes or 10,
        image_size=image_size,
    )
    num_classes = config.model.get("num_classes") or source.num_classes
    spec, model = build_model(config, num_classes)
    # Arrays know their channels (digits: 1); decoded files follow the model (RGB: 3).
    channels = d.channels or getattr(source, "channels", None) or spec.in_chans
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


def process_info() -> tuple[int, int]:
    return jax.process_index(), jax.process_count()
