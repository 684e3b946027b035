"""Registry-wide tests, parameterised over every registered model."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnx import models
from cnnx.errors import ConfigError
from tests.models.helpers import abstract_variables, count_params

ALL_MODELS = models.list_models()
# The train-step test compiles a forward and backward pass, which costs seconds per layer on a
# 2-core CPU, so it trains each family's shallowest member (`depth_mult=0.01`: one block per
# stage, so every layer type still runs; families without a depth knob are unchanged), and
# above THIN_LIMIT parameters also a quarter of the width. The registered variant itself is
# covered by the `jax.eval_shape` tests above and by the parity tests.
THIN_LIMIT = 15_000_000


def _train_test_overrides(n_params: int) -> dict:
    if n_params > THIN_LIMIT:
        return dict(width_mult=0.25, depth_mult=0.01)
    return dict(depth_mult=0.01)


def _outputs_logits(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("name", ALL_MODELS)
def test_param_count_matches_spec(name):
    spec = models.get_spec(name)
    n = count_params(abstract_variables(name))
    if spec.param_count is not None:
        assert n == spec.param_count
    # Resolution does not change the parameter count.
    bigger = max(spec.test_resolution * 2, spec.resolution if n < 50e6 else 0)
    assert count_params(abstract_variables(name, resolution=bigger)) == n


WITH_TORCH_REFERENCE = [
    n for n in ALL_MODELS if models.get_spec(n).reference.startswith(("torchvision:", "timm:"))
]


@pytest.mark.torch
@pytest.mark.parametrize("name", WITH_TORCH_REFERENCE)
def test_param_count_is_the_references(name):
    """The spec's count is the torchvision / timm reference's own (so, with the test above,
    cnnx's count is the reference's). The reference is built on torch's meta device: shapes
    only, no memory."""
    torch = pytest.importorskip("torch")
    from cnnx.analysis.torch_speed import counterpart

    build, _ = counterpart(name)
    with torch.device("meta"):
        reference = build()
    assert sum(p.numel() for p in reference.parameters()) == models.get_spec(name).param_count


_TRAINED: dict[tuple, str] = {}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_and_gradients(name):
    spec = models.get_spec(name)
    overrides = {"num_classes": 7} | _train_test_overrides(count_params(abstract_variables(name)))
    model = models.create(name, **overrides)
    r = spec.test_resolution
    # Shallow members of one family often coincide (resnet50/101/152 with one block per stage
    # are the same network) or differ only in numbers (widths, group counts, growth rates:
    # efficientnet_b0/b2, nasnetamobile/large, densenet121/161, vit_s/b): they run the same
    # layers in the same order, so train each distinct computation (the eval jaxpr with every
    # number blanked) once. The registered sizes are covered by the eval_shape and parity tests.
    abstract = abstract_variables(name, r, **overrides)
    x_abstract = jax.ShapeDtypeStruct((2, r, r, spec.in_chans), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(abstract, x_abstract)
    signature = (spec.family, re.sub(r"\d+", "#", str(jaxpr)))
    if signature in _TRAINED:
        pytest.skip(f"same layers as {_TRAINED[signature]} (already trained here)")
    _TRAINED[signature] = name
    x = jax.random.normal(jax.random.PRNGKey(1), (2, r, r, spec.in_chans))
    labels = jnp.array([1, 3])

    # Initialisation, the train step and the eval pass in one program: one compilation (an
    # eager `init` alone dispatches and compiles every initialiser and layer separately).
    @jax.jit
    def step(x):
        variables = model.init(jax.random.PRNGKey(0), x, train=False)
        params = variables["params"]
        batch_stats = variables.get("batch_stats", {})

        def loss_fn(p):
            out, updates = model.apply(
                {"params": p, "batch_stats": batch_stats},
                x,
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": jax.random.PRNGKey(2)},
            )
            logits = _outputs_logits(out)
            onehot = jax.nn.one_hot(labels, 7)
            loss = -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), -1))
            if isinstance(out, tuple):
                loss += sum(-jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(a), -1)) for a in out[1])
            return loss, (logits, updates)

        (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        eval_out = model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
        return loss, logits, batch_stats, updates, grads, eval_out

    loss, logits, batch_stats, updates, grads, eval_out = step(x)
    assert logits.shape == (2, 7)
    assert not isinstance(eval_out, tuple), "eval mode must return logits only"
    assert eval_out.shape == (2, 7)
    assert np.isfinite(np.asarray(loss))
    assert np.all(np.isfinite(np.asarray(eval_out)))
    # Every parameter receives a gradient.
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    dead = [jax.tree_util.keystr(k) for k, g in flat if not np.any(np.asarray(g) != 0)]
    assert not dead, f"parameters without gradient: {dead[:10]}"
    # Train mode updates batch statistics; eval mode leaves them alone (it is not mutable).
    if batch_stats:
        before = jax.tree.leaves(batch_stats)
        after = jax.tree.leaves(updates["batch_stats"])
        assert any(not np.allclose(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_feature_mode(name):
    spec = models.get_spec(name)
    model = models.create(name, num_classes=0)
    r = spec.test_resolution
    out = jax.eval_shape(
        lambda: model.init_with_output(
            jax.random.PRNGKey(0), jnp.zeros((2, r, r, spec.in_chans)), train=False
        )[0]
    )
    assert len(out.shape) == 2 and out.shape[0] == 2


def test_spec_fields_are_sane():
    for name in ALL_MODELS:
        spec = models.get_spec(name)
        assert spec.min_resolution <= spec.test_resolution <= spec.resolution, name
        assert 0 < spec.crop_pct <= 1.0, name
        assert spec.paper, f"{name} has no paper reference"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ConfigError, match="resnet50"):
        models.get_spec("resnet05")


def test_unknown_option_is_rejected():
    with pytest.raises(ConfigError, match="width_mult"):
        models.create("resnet18", widht_mult=2.0)


def test_list_models_pattern_and_family():
    assert "resnet50" in models.list_models("resnet*")
    assert all(models.get_spec(n).family == "lenet" for n in models.list_models(family="lenet"))
