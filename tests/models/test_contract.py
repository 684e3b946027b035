"""The model contract in code: one base for every family, lacked options declared and refused.

`lacks` must be honest both ways: a family that declares an option changes its program with
it, a family that lacks one ignores it (so refusing it in `create` loses nothing).
"""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import pytest

from cnnx import models
from cnnx.errors import ConfigError
from cnnx.models.contract import OPTIONAL, Classifier
from cnnx.models.registry import as_registered, options

CONTRACT = [f.name for f in dataclasses.fields(Classifier) if f.name not in ("parent", "name")]


def _one_per_builder() -> dict[str, str]:
    """builder name -> its smallest registered model with residual blocks (the plain
    networks have no residual branch to drop)."""
    found = {}
    for name in models.list_models():
        spec = models.get_spec(name)
        key = (name.startswith("plain"), spec.param_count or float("inf"), name)
        best = found.get(spec.builder.__name__)
        if best is None or key < best[0]:
            found[spec.builder.__name__] = (key, name)
    return {builder: name for builder, (_, name) in found.items()}


BUILDERS = _one_per_builder()
# Their one block per stage would be the stage's first, which has no residual branch.
FULL_DEPTH = ("EfficientNet", "MobileNetV2")


def test_every_family_is_a_classifier_with_the_one_call_docstring():
    assert CONTRACT == [
        "num_classes",
        "width_mult",
        "depth_mult",
        "dropout_rate",
        "drop_path_rate",
        "remat",
        "dtype",
    ]
    for name in BUILDERS.values():
        builder = models.get_spec(name).builder
        assert issubclass(builder, Classifier), name
        assert builder.__call__ is not Classifier.__call__, name
        assert inspect.getdoc(builder.__call__) == inspect.getdoc(Classifier.__call__), name


def _train_jaxpr(name: str, **options_) -> str:
    """The train-mode program of `name` (one block per stage where that keeps a residual
    block), built directly: `create` would refuse a lacked option."""
    spec = models.get_spec(name)
    depth = 1.0 if spec.builder.__name__ in FULL_DEPTH else 0.01
    fields = {**spec.kwargs, "num_classes": 3, "depth_mult": depth, **options_}
    model = spec.builder(**fields)
    r = spec.test_resolution
    x = jax.ShapeDtypeStruct((1, r, r, spec.in_chans), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)

    def apply(v, x):
        return model.apply(
            v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.PRNGKey(1)}
        )

    return str(jax.make_jaxpr(apply)(variables, x))


@pytest.mark.slow
@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_lacks_says_what_the_family_ignores(builder):
    name = BUILDERS[builder]
    spec = models.get_spec(name)
    off = {"drop_path_rate": 0.0, "remat": False}
    neutral = _train_jaxpr(name, **off)
    for option, value in (("drop_path_rate", 0.5), ("remat", True)):
        changed = _train_jaxpr(name, **{**off, option: value}) != neutral
        assert changed == (option not in spec.lacks), (name, option)


def test_a_lacked_option_is_refused_naming_the_families_that_have_it():
    with pytest.raises(
        ConfigError, match=r"model\.remat=True: alexnet \(alexnet\) has no per-block"
    ) as e:
        models.create("alexnet", remat=True)
    have = str(e.value).split("the families that have it: ")[1].split(". ")[0].split(", ")
    assert "resnet" in have and "vit" in have and "alexnet" not in have
    with pytest.raises(ConfigError, match="has no stochastic depth"):
        models.create("densenet121", drop_path_rate=0.1)
    # The neutral value is accepted (the config's defaults pass it to every family).
    assert models.create("alexnet", remat=False, drop_path_rate=0.0).remat is False


def test_options_leave_out_what_the_family_lacks():
    assert {"remat", "drop_path_rate"} <= options(models.get_spec("resnet18"))
    assert not options(models.get_spec("vgg11")) & OPTIONAL.keys()
    assert "remat" in options(models.get_spec("densenet121"))


def test_as_registered_reads_the_built_model():
    spec = models.get_spec("resnet18")
    assert as_registered(spec, models.create("resnet18"))
    assert not as_registered(spec, models.create("resnet18", width_mult=0.5))
    tweaked = models.create("resnet18", num_classes=3)
    assert not as_registered(spec, tweaked)
    assert as_registered(spec, tweaked, ignore=frozenset({"num_classes"}))
    assert not as_registered(spec, models.create("resnet34"))
