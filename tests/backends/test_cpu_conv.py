"""cnnx.backends.cpu.conv: same forward, same gradients as lax.conv_general_dilated."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnnx.analysis import flops
from cnnx.analysis.trace import trace
from cnnx.backends import cpu
from cnnx.backends.cpu import conv as cpu_conv
from cnnx.layers import ConvNormAct

# (input H, Cin, Cout, kernel, stride, padding, dilation, groups)
CASES = [
    (10, 16, 8, 1, 1, 0, 1, 1),  # 1x1, Cin > Cout: dy on the left
    (10, 8, 16, 1, 1, 0, 1, 1),  # 1x1, Cin < Cout: x on the left
    (10, 16, 32, 1, 2, 0, 1, 1),  # strided (projection shortcuts)
    (11, 32, 16, 1, 2, "SAME", 1, 1),  # odd size, TF padding
    (9, 8, 6, 3, 1, 1, 1, 1),  # larger kernels, padding, groups, the image: plain lax
    (9, 8, 6, 1, 1, 1, 1, 1),
    (9, 8, 8, 3, 1, 1, 1, 8),
    (11, 3, 5, 1, 1, 0, 1, 1),
]
DN = ("NHWC", "HWIO", "NHWC")


def _loss(conv, h, cin, cout, k, s, p, d, g):
    pad = p if isinstance(p, str) else [(p, p), (p, p)]

    def loss(x, w):
        y = conv(
            x, w, (s, s), pad, rhs_dilation=(d, d), dimension_numbers=DN, feature_group_count=g
        )
        return jnp.sum(jnp.sin(y) * jnp.arange(y.size).reshape(y.shape) / y.size)

    return loss


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_forward_and_gradients_match_lax(case, monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    h, cin, cout, k, _, _, _, g = case
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, h, h, cin)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, cin // g, cout)), jnp.float32)
    ref = jax.jit(jax.value_and_grad(_loss(lax.conv_general_dilated, *case), (0, 1)))(x, w)
    out = jax.jit(jax.value_and_grad(_loss(cpu_conv.conv_general_dilated, *case), (0, 1)))(x, w)
    # Forward and input gradient: XLA's own convolutions; weight gradient: summation order.
    np.testing.assert_allclose(out[0], ref[0], rtol=1e-6)
    np.testing.assert_allclose(out[1][0], ref[1][0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[1][1], ref[1][1], rtol=1e-5, atol=1e-5)


def test_bfloat16_weight_gradient(monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((4, 8, 8, 32)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((1, 1, 32, 16)), jnp.bfloat16)
    case = (8, 32, 16, 1, 1, 0, 1, 1)
    ref = jax.grad(_loss(lax.conv_general_dilated, *case), 1)(x, w)
    out = jax.grad(_loss(cpu_conv.conv_general_dilated, *case), 1)(x, w)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.float32(out), np.float32(ref), rtol=0.05, atol=0.05)


def test_only_1x1_kernels_take_the_product(monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    for case in CASES:
        h, cin, cout, k, _, p, _, g = case
        x = jax.ShapeDtypeStruct((2, h, h, cin), jnp.float32)
        w = jax.ShapeDtypeStruct((k, k, cin // g, cout), jnp.float32)
        jaxpr = str(jax.make_jaxpr(jax.grad(_loss(cpu_conv.conv_general_dilated, *case), 1))(x, w))
        custom = k == 1 and p in (0, "SAME") and g == 1 and cin >= 8
        assert ("dot_general" in jaxpr) == custom, case


def test_switch_and_platform(monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "xla")
    assert not cpu.enabled()
    monkeypatch.setenv("CNNX_CPU_GRADS", "auto")
    assert cpu.enabled() == (jax.default_backend() == "cpu")
    x = jax.ShapeDtypeStruct((1, 5, 5, 8), jnp.float32)
    w = jax.ShapeDtypeStruct((1, 1, 8, 4), jnp.float32)

    def conv(x, w):
        return cpu_conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN)

    text = str(jax.make_jaxpr(jax.grad(lambda x, w: conv(x, w).sum(), 1))(x, w))
    assert ("dot_general" in text) == cpu.enabled()  # the weight gradient as products


class _Net(nn.Module):
    """Stem, 1x1 (plain and strided) and 3x3 ConvNormAct units and a residual sum."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = ConvNormAct(16, 3, 2, name="stem")(x, train=train)
        y = ConvNormAct(8, 1, name="reduce")(x, train=train)
        y = ConvNormAct(8, 3, name="conv")(y, train=train)
        y = ConvNormAct(16, 1, act=None, name="expand")(y, train=train)
        x = nn.relu(x + y)
        x = ConvNormAct(32, 1, 2, act=None, name="downsample")(x, train=train)
        x = ConvNormAct(32, 3, groups=32, name="depthwise")(x, train=train)  # depthwise.py
        return jnp.mean(x, axis=(1, 2))


def test_model_gradients_and_analysis_unchanged(monkeypatch):
    """A small network's gradients with and without it; the traced forward is the same."""
    model = _Net()
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 16, 16, 3)), jnp.float32)
    variables = model.init(jax.random.PRNGKey(0), x, train=False)

    def grads():
        def loss(params):
            out, _ = model.apply(
                {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
            )
            return jnp.mean(out**2)

        return jax.jit(jax.grad(loss))(variables["params"])

    monkeypatch.setenv("CNNX_CPU_GRADS", "xla")
    ref, macs_ref = grads(), flops.total_macs(trace(model, x.shape))
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    out, macs = grads(), flops.total_macs(trace(model, x.shape))
    assert macs == macs_ref
    # The depthwise kernel's gradient is ~1e-5 of the others (train-mode BatchNorm right after
    # it removes most of it): a different summation order moves it by 1e-3 of itself, so the
    # absolute tolerance is on the scale of the whole gradient.
    scale = max(float(jnp.max(jnp.abs(b))) for b in jax.tree.leaves(ref))
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * scale)
