"""cnnx.layers.pool.max_pool on the CPU route (cnnx.backends.cpu.pool): flax's results."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnx import models
from cnnx.analysis.trace import trace
from cnnx.layers.pool import max_pool

# (input H, window, stride, padding)
CASES = [
    (12, 3, 2, ((1, 1), (1, 1))),  # ResNet's stem pool
    (13, 3, 2, "VALID"),  # Inception
    (8, 2, 2, "VALID"),  # VGG
    (9, 3, 2, "SAME"),  # NASNet
    (10, 3, 2, ((0, 1), (0, 1))),  # torch ceil_mode
    (7, 3, 1, ((1, 1), (1, 1))),
]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
@pytest.mark.parametrize("relu", [False, True], ids=["", "ties"])
def test_same_values_and_gradients_as_flax(case, relu, monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    h, k, s, pad = case
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, h, h, 3)), jnp.float32)
    if relu:  # zeros tie within windows: the first maximum gets the gradient, as in flax
        x = jnp.maximum(x, 0)

    def loss(pool):
        return lambda x: jnp.sum(jnp.cos(pool(x, (k, k), strides=(s, s), padding=pad)))

    ref = jax.jit(jax.value_and_grad(loss(nn.max_pool)))(x)
    out = jax.jit(jax.value_and_grad(loss(max_pool)))(x)
    np.testing.assert_array_equal(out[0], ref[0])
    np.testing.assert_allclose(out[1], ref[1], rtol=1e-6, atol=1e-6)


def test_off_switch_and_trace(monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    rows = [layer for layer in trace(models.create("resnet18"), (1, 64, 64, 3)).layers]
    assert [r.kind for r in rows].count("maxpool") == 1  # the analysis still sees the pool
    monkeypatch.setenv("CNNX_CPU_GRADS", "xla")
    x = jax.ShapeDtypeStruct((1, 8, 8, 4), jnp.float32)
    grad = jax.grad(lambda x: max_pool(x, (2, 2), (2, 2)).sum())
    assert "custom" not in str(jax.make_jaxpr(grad)(x))
