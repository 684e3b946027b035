"""Model registry: every architecture by name, with a frozen spec of how to build and feed it.

Families register their variants from a table, in a loop (`register_family`), rather than one
function per variant; `create(name, **overrides)` builds the Flax module. Names follow
torchvision where it has the model, timm otherwise, and plain descriptive names elsewhere.
Every builder is a `contract.Classifier`; the optional contract options a family does not
implement are declared on its specs (`ModelSpec.lacks`), and `create` holds that line.
"""

import dataclasses
import difflib
import fnmatch
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from cnnx.errors import ConfigError
from cnnx.image_stats import (  # noqa: F401 (INCEPTION_*: the families' specs use them)
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
)
from cnnx.models.contract import OPTIONAL, Classifier
from cnnx.models.layer_groups import LayerGroups


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build one registered model and how it is meant to be fed.

    Attributes:
      name: registry name (`resnet50`).
      family: module family (`resnet`); selects the weight-conversion rules.
      builder: the Flax module class (or a factory returning a module).
      kwargs: constructor arguments that make this variant.
      resolution: default training resolution (square).
      eval_resolution: default evaluation resolution.
      crop_pct: centre-crop ratio used at evaluation (resize to resolution / crop_pct, then crop).
      in_chans: channels of the reference input (3 for ImageNet models).
      num_classes: classes of the reference head.
      dropout: the reference dropout rate before the classifier.
      drop_path: the reference stochastic depth rate.
      min_resolution: the smallest input the architecture accepts.
      test_resolution: a small resolution that exercises every layer (used by tests).
      reference: external implementation with identical structure (`torchvision:resnet50`,
        `timm:inception_v4`), or '' when none exists.
      param_count: the exact expected parameter count: the reference's when there is one,
        otherwise the count derived from the paper's layer table (tests check it).
      paper: short citation.
      year: year of publication.
      top1: published ImageNet top-1 (%) of the reference weights, if any, and its source.
      mean, std: the input normalisation (of pixels / 255) the reference weights expect,
        including any re-normalisation the reference does inside `forward` (torchvision's
        pretrained GoogLeNet / Inception v3 set `transform_input`, which amounts to 0.5 / 0.5);
        timm's come from its `pretrained_cfg`. Converted weights are evaluated with these.
      lacks: the optional contract options (`contract.OPTIONAL`: `drop_path_rate`, `remat`)
        the family does not implement; `create` accepts only their neutral default.
      layer_groups: where each parameter sits in depth (stem, blocks, head), for layer-wise
        learning-rate decay (`optim.layer_decay`); None where the family declares none.
    """

    name: str
    family: str
    builder: Callable[..., Any]
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    resolution: int = 224
    eval_resolution: int | None = None
    crop_pct: float = 0.875
    in_chans: int = 3
    num_classes: int = 1000
    dropout: float = 0.0
    drop_path: float = 0.0
    min_resolution: int = 32
    test_resolution: int = 32
    reference: str = ""
    param_count: int | None = None
    paper: str = ""
    year: int | None = None
    top1: tuple[float, str] | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    lacks: frozenset[str] = frozenset()
    layer_groups: LayerGroups | None = None

    def __post_init__(self):
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))
        object.__setattr__(self, "lacks", frozenset(self.lacks))
        if not self.lacks <= OPTIONAL.keys():
            raise ValueError(f"{self.name}: lacks {sorted(self.lacks)}; optional: {list(OPTIONAL)}")
        if self.eval_resolution is None:
            object.__setattr__(self, "eval_resolution", self.resolution)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Adds a spec to the registry; a name may be registered only once."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def register_family(
    family: str, builder: Callable[..., Any], table: Mapping[str, Mapping[str, Any]], **common
) -> None:
    """Registers every row of a family table.

    Args:
      family: family name, shared by all rows.
      builder: the module class.
      table: variant name -> dict with key `kwargs` (constructor arguments) and any other
        `ModelSpec` field; fields absent from a row come from `common`.
      **common: `ModelSpec` fields shared by every row.
    """
    for name, row in table.items():
        fields = {**common, **row}
        register(ModelSpec(name=name, family=family, builder=builder, **fields))


def _ensure_loaded() -> None:
    # Importing the package imports every family module, which registers its table.
    import cnnx.models  # noqa: F401


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Names of registered models matching a shell-style pattern (and family), sorted."""
    _ensure_loaded()
    return sorted(
        n
        for n, s in _REGISTRY.items()
        if fnmatch.fnmatch(n, pattern) and (family is None or s.family == family)
    )


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model; unknown names raise `ConfigError` with close matches."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"Unknown model {name!r}.{hint} `python scripts/list_models.py` (or "
            "cnnx.models.list_models()) lists all registered models."
        ) from None


def model_fields(builder: Callable[..., Any]) -> set[str]:
    """Constructor argument names a module class accepts."""
    if dataclasses.is_dataclass(builder):
        return {f.name for f in dataclasses.fields(builder) if f.name not in ("parent", "name")}
    import inspect

    return set(inspect.signature(builder).parameters)


def options(spec: ModelSpec) -> set[str]:
    """The constructor arguments that change a registered model: its fields less `lacks`."""
    return model_fields(spec.builder) - spec.lacks


def _neutral(option: str):
    return next(f.default for f in dataclasses.fields(Classifier) if f.name == option)


def _refuse_lacked(spec: ModelSpec, option: str, value) -> None:
    """A ConfigError for a non-neutral value of an option `spec`'s family lacks."""
    with_it = sorted({s.family for s in _REGISTRY.values() if option not in s.lacks})
    raise ConfigError(
        f"model.{option}={value!r}: {spec.name} ({spec.family}) has no "
        f"{OPTIONAL[option]}; the families that have it: {', '.join(with_it)}. Leave it at "
        f"{_neutral(option)!r} for {spec.name}."
    )


def create(name: str, **overrides):
    """Builds a registered model.

    Args:
      name: registry name.
      **overrides: constructor arguments replacing the variant's (`num_classes`, `width_mult`,
        `depth_mult`, `dropout_rate`, `drop_path_rate`, `remat`, `dtype`, ...). An option
        the family lacks (`ModelSpec.lacks`) may be given only at its neutral default.

    Returns:
      The Flax module (unbound).

    Raises:
      ConfigError: an unknown model or option, or a non-neutral value of a lacked option
        (naming the families that have it).
    """
    spec = get_spec(name)
    known = model_fields(spec.builder)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"Model {name!r} ({spec.builder.__name__}) has no option(s) {unknown}. "
            f"Its options are: {', '.join(sorted(options(spec)))}."
        )
    for option in sorted(spec.lacks & overrides.keys()):
        # 0 and 0.0 are neutral too, as False is (`remat=0`, `drop_path_rate=0`).
        if overrides[option] != _neutral(option):
            _refuse_lacked(spec, option, overrides[option])
    kwargs = {**spec.kwargs, **overrides}
    return spec.builder(**kwargs)


def as_registered(spec: ModelSpec, model, ignore: frozenset[str] = frozenset()) -> bool:
    """Whether `model` equals `create(spec.name)` in every field outside `ignore`.

    Reads the fields of the model already built (with the builder's defaults and the spec's
    kwargs) instead of building a second one.
    """
    builder = spec.builder
    if not (isinstance(builder, type) and type(model) is builder):
        return False
    for field in dataclasses.fields(builder):
        if field.name in ("parent", "name") or field.name in ignore:
            continue
        if field.name in spec.kwargs:
            registered = spec.kwargs[field.name]
        elif field.default_factory is not dataclasses.MISSING:
            registered = field.default_factory()
        else:
            registered = field.default
        if getattr(model, field.name) != registered:
            return False
    return True
