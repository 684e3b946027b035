"""Every family with depthwise convolutions: same logits and gradients with the CPU switch on
(cnnx.backends.cpu.depthwise) and off (XLA's grouped convolution)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnx import models

# The shallowest, narrowest member of each family that has depthwise convolutions (3x3, 5x5
# and 7x7; strides 1 and 2; torch and TF SAME padding), at the registry's test resolution:
# these run through ConvNormAct, and ConvNeXt through its own nn.Conv. NASNet's separable
# convolution (its own nn.Conv too) is tested alone below: the whole network's gradient takes
# minutes to compile with the switch forced on at this size.
FAMILIES = [
    "mobilenetv1_025",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "convnext_tiny",
]


def _logits_and_grads(model, variables, x):
    """Eval-mode logits and the parameter gradients of a loss on them, traced now.

    Eval mode: BatchNorm with fixed statistics is affine, so float rounding of a different
    summation order stays at rounding size (train-mode BatchNorm over two tiny images
    magnifies it 100-fold); both gradients of every depthwise layer are still exercised.
    """

    def loss_fn(params):
        logits = model.apply({**variables, "params": params}, x, train=False)
        return jnp.sum(jnp.sin(logits)), logits

    (_, logits), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables["params"])
    return logits, grads


def _count_convs(model, variables, x) -> int:
    jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x, train=False))(variables)
    return str(jaxpr).count("conv_general_dilated")


@pytest.mark.slow  # two compilations of a forward and backward pass per family
@pytest.mark.parametrize("name", FAMILIES)
def test_switch_on_and_off_agree(name, monkeypatch):
    spec = models.get_spec(name)
    model = models.create(name, num_classes=5, width_mult=0.25, depth_mult=0.01)
    r = spec.test_resolution
    x = jax.random.normal(jax.random.PRNGKey(1), (2, r, r, spec.in_chans))
    variables = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x, train=False))(x)

    monkeypatch.setenv("CNNX_CPU_GRADS", "xla")
    convs_off = _count_convs(model, variables, x)
    ref_logits, ref_grads = _logits_and_grads(model, variables, x)
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    convs_on = _count_convs(model, variables, x)
    logits, grads = _logits_and_grads(model, variables, x)

    assert convs_on < convs_off  # the depthwise convolutions did change route
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5 * np.max(np.abs(ref_logits)))
    for (path, g), ref in zip(
        jax.tree_util.tree_flatten_with_path(grads)[0], jax.tree.leaves(ref_grads)
    ):
        tol = 1e-4 * max(float(np.max(np.abs(ref))), 1e-6)
        np.testing.assert_allclose(g, ref, atol=tol, err_msg=jax.tree_util.keystr(path))


def test_nasnet_separable_conv_takes_the_route(monkeypatch):
    from cnnx.models.nasnet import SeparableConv

    layer = SeparableConv(features=6, kernel=5, strides=2)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 9, 9, 4))
    variables = layer.init(jax.random.PRNGKey(0), x)

    def value_and_grads():
        f = jax.value_and_grad(lambda v: jnp.sum(jnp.sin(layer.apply(v, x))))
        return jax.make_jaxpr(f)(variables), jax.jit(f)(variables)

    monkeypatch.setenv("CNNX_CPU_GRADS", "xla")
    ref_jaxpr, (ref, ref_grads) = value_and_grads()
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    jaxpr, (out, grads) = value_and_grads()
    assert str(jaxpr).count("conv_general_dilated") < str(ref_jaxpr).count("conv_general_dilated")
    np.testing.assert_allclose(out, ref, rtol=1e-5)
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(g, r, atol=1e-5 * float(np.max(np.abs(r))))
