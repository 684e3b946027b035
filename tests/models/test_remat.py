"""`remat` (per-block rematerialisation): same parameters, outputs and gradients as without it."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnx import models
from cnnx.layers.remat import maybe_remat
from cnnx.models.registry import options

# One member per family that takes `remat` (every kind of block once), shrunk so that tracing
# is quick. Tracing checks parameters and the presence of the checkpoints; one of them is also
# compiled and run (compiling costs tens of seconds per network on a loaded 2-core CPU): all
# families share `maybe_remat`, and that case has BatchNorm statistics, the static `train`
# flag and random numbers (stochastic depth) inside the rematerialised blocks.
CASES = {
    "resnext50_32x4d": dict(width_mult=0.25, depth_mult=0.01),  # grouped Bottleneck
    "resnet20_cifar": dict(depth_mult=0.01),  # BasicBlock, option-A shortcuts
    "seresnet50": dict(width_mult=0.25, depth_mult=0.01),  # SEBottleneck
    "efficientnet_b0": dict(width_mult=0.25, depth_mult=0.01),  # MBConv + SE
    "convnext_tiny": dict(width_mult=0.25, depth_mult=0.01),
    "vit_ti_16": dict(depth_mult=0.1),
    "swin_t": dict(depth_mult=0.01),
    "densenet121": dict(width_mult=0.25, depth_mult=0.01),
}


def _model(name, remat):
    kwargs = dict(CASES[name], num_classes=5, remat=remat)
    if "drop_path_rate" in options(models.get_spec(name)):
        # Stochastic depth on: random numbers inside rematerialised blocks must not change.
        kwargs["drop_path_rate"] = 0.5
    return models.create(name, **kwargs)


def _loss_and_grads(model):
    def loss(params, rest, x):
        out, updates = model.apply(
            {"params": params, **rest},
            x,
            train=True,
            mutable=list(rest),
            rngs={"dropout": jax.random.PRNGKey(2)},
        )
        logits = out[0] if isinstance(out, tuple) else out
        return jnp.sum(jnp.sin(logits)), (logits, updates)

    return jax.value_and_grad(loss, has_aux=True)


def _input(name):
    spec = models.get_spec(name)
    r = spec.test_resolution
    return jax.random.normal(jax.random.PRNGKey(1), (2, r, r, spec.in_chans))


@pytest.mark.parametrize("name", list(CASES))
def test_remat_keeps_parameter_tree_and_adds_checkpoints(name):
    x = _input(name)
    trees, programs = [], []
    for remat in (False, True):
        model = _model(name, remat)
        init = functools.partial(model.init, train=False)
        variables = jax.eval_shape(init, jax.random.PRNGKey(0), x)
        params = variables["params"]
        rest = {k: v for k, v in variables.items() if k != "params"}
        trees.append(jax.tree.map(lambda a: (a.shape, a.dtype), variables))
        programs.append(str(jax.make_jaxpr(_loss_and_grads(model))(params, rest, x)))
    assert trees[0] == trees[1]
    assert "checkpoint" not in programs[0] and "remat" not in programs[0]
    assert "checkpoint" in programs[1] or "remat" in programs[1]


def test_remat_gives_the_same_outputs_gradients_and_statistics():
    name = "resnet20_cifar"
    x = _input(name)
    plain, rematted = _model(name, False), _model(name, True)

    @jax.jit  # one compilation for everything (each costs seconds on a 2-core CPU)
    def both(x):
        out = []
        for model in (plain, rematted):
            variables = model.init(jax.random.PRNGKey(0), x, train=False)
            params = variables.pop("params")
            out.append((variables, params, _loss_and_grads(model)(params, variables, x)))
        return out

    (init_a, params_a, out_a), (init_b, params_b, out_b) = both(x)
    # Same initial variables, bit for bit; same loss, logits, statistics and gradients.
    for a, b in zip(jax.tree.leaves((init_a, params_a)), jax.tree.leaves((init_b, params_b))):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(out_a), jax.tree.leaves(out_b)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_policy_names_are_checked():
    block = models.resnet.BasicBlock
    assert maybe_remat(block, False) is block
    assert maybe_remat(block, True) is maybe_remat(block, True)  # built once
    assert maybe_remat(block, "dots_saveable").__name__ == "BasicBlock"
    with pytest.raises(ValueError, match="dots_saveable"):
        maybe_remat(block, "dots")
