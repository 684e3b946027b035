"""oneDNN's matmul for dense layers (cnnx.backends.cpu.dense): parity with lax, routing."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnnx import backends
from cnnx.backends.cpu import dense, onednn
from cnnx.layers import Dense
from cnnx.layers.transformer import Mlp
from cnnx.models import registry
from tests.backends.parity import rel_err

needs_onednn = pytest.mark.skipif(not onednn.available(), reason=onednn.status())
DENSE = (((1,), (0,)), ((), ()))  # nn.Dense's contraction for a 2-D input

# (rows, in features, out features): wider out, narrower out, a row count no kernel divides.
SHAPES = [(37, 64, 96), (50, 128, 40), (1, 33, 300)]


def _values_and_grads(f, a, b, dy):
    y, vjp = jax.vjp(f, a, b)
    return (y, *vjp(dy))


def _operands(m, k, n, dtype=jnp.float32):
    ka, kb, ky = jax.random.split(jax.random.PRNGKey(m * k + n), 3)
    a = jax.random.normal(ka, (m, k)).astype(dtype)
    b = (jax.random.normal(kb, (k, n)) / np.sqrt(k)).astype(dtype)
    return a, b, jax.random.normal(ky, (m, n)).astype(dtype)


@needs_onednn
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_values_and_both_gradients_match_dot_general(shape):
    a, b, dy = _operands(*shape)
    expected = _values_and_grads(lambda a, b: lax.dot_general(a, b, DENSE), a, b, dy)
    got = _values_and_grads(jax.jit(dense.matmul), a, b, dy)
    for name, e, g in zip(("output", "input gradient", "kernel gradient"), expected, got):
        assert g.shape == e.shape and g.dtype == e.dtype, name
        assert rel_err(g, e) < 1e-5, (shape, name, rel_err(g, e))


@needs_onednn
def test_bfloat16_matches_to_bfloat16_rounding():
    a, b, dy = _operands(40, 64, 72, jnp.bfloat16)
    got = _values_and_grads(dense.matmul, a, b, dy)
    f32 = [t.astype(jnp.float32) for t in (a, b, dy)]
    want = _values_and_grads(lambda a, b: lax.dot_general(a, b, DENSE), *f32)
    for e, g in zip(want, got):
        assert g.dtype == jnp.bfloat16 and rel_err(g, e) < 2e-2


@needs_onednn
def test_leading_axes_and_per_example_gradients(monkeypatch):
    """nn.Dense's (batch, tokens, features) input through the route, and vmap over it."""
    monkeypatch.setenv(onednn.SWITCH, "on")
    monkeypatch.setattr(dense, "MIN_MACS", 0)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 16))
    w = jax.random.normal(jax.random.PRNGKey(1), (16, 24))
    dims = (((2,), (0,)), ((), ()))
    assert rel_err(dense.dot_general(x, w, dims), lax.dot_general(x, w, dims)) < 1e-5

    def per_example(f):
        loss = lambda w, x: jnp.sum(f(x, w, (((1,), (0,)), ((), ()))) ** 2)  # noqa: E731
        return jax.vmap(jax.grad(loss), (None, 0))(w, x)

    assert rel_err(per_example(dense.dot_general), per_example(lax.dot_general)) < 1e-5


def _jaxpr(a, b, dims=DENSE, **kw):
    return str(jax.make_jaxpr(lambda a, b: backends.dot_general(a, b, dims, **kw))(a, b))


@needs_onednn
def test_switch_routes_dense_products(monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")  # the CPU's routes in this test process
    a, b = jnp.ones((64, 64)), jnp.ones((64, 64))  # 2**18 multiply-adds: the smallest routed
    monkeypatch.setenv(onednn.SWITCH, "on")
    assert "cnnx_onednn_matmul" in _jaxpr(a, b)
    assert "cnnx_onednn_matmul" not in _jaxpr(a[:32], b)  # below MIN_MACS: XLA's dot
    assert "cnnx_onednn_matmul" not in _jaxpr(a, b, preferred_element_type=jnp.bfloat16)
    batched = (((2,), (1,)), ((0,), (0,)))  # attention's batched products stay with XLA
    assert "cnnx_onednn" not in _jaxpr(jnp.ones((2, 64, 64)), jnp.ones((2, 64, 64)), batched)
    with backends.lax_only():  # the analysis tools count dot_general equations
        assert "cnnx_onednn" not in _jaxpr(a, b)
    monkeypatch.setenv(onednn.SWITCH, "off")
    assert "cnnx_onednn" not in _jaxpr(a, b)
    monkeypatch.setenv(onednn.SWITCH, "auto")  # 8 devices in this process: XLA
    assert "cnnx_onednn" not in _jaxpr(a, b)


@needs_onednn
def test_implementation_names_are_onednns_own_kernels():
    names = {onednn.matmul_implementation(64, 64, 64, ta, tb) for ta in (0, 1) for tb in (0, 1)}
    assert all(name.startswith(("brg", "gemm:jit", "jit")) for name in names), names
    assert dense.fast(64, 64, 64) and not dense.fast(8, 8, 8)


@needs_onednn
def test_mlp_values_and_gradients_match_xla(monkeypatch):
    """A transformer MLP (two `Dense` layers and GELU): same parameters, values, gradients."""
    monkeypatch.setattr(dense, "MIN_MACS", 0)
    mlp = Mlp(hidden_features=48, dtype=jnp.float32)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 32))
    params = mlp.init(jax.random.PRNGKey(1), x, train=False)
    out = {}
    for mode in ("off", "on"):
        monkeypatch.setenv(onednn.SWITCH, mode)
        loss = lambda p, x: jnp.sum(mlp.apply(p, x, train=False) ** 2)  # noqa: E731
        f = jax.jit(jax.value_and_grad(loss, (0, 1)))
        out[mode] = f(params, x)
        if mode == "on":
            assert "cnnx_onednn_matmul" in str(jax.make_jaxpr(f)(params, x))
    for e, g in zip(jax.tree.leaves(out["off"]), jax.tree.leaves(out["on"])):
        assert rel_err(g, e) < 1e-5


@needs_onednn
def test_vit_logits_match_xla(monkeypatch):
    model = registry.create("vit_ti_16", num_classes=10)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
    variables = model.init(jax.random.PRNGKey(1), x, train=False)
    logits = {}
    for mode in ("off", "on"):
        monkeypatch.setenv(onednn.SWITCH, mode)
        apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
        if mode == "on":
            assert "cnnx_onednn_matmul" in apply.lower(variables, x).as_text()
        logits[mode] = apply(variables, x)
    assert rel_err(logits["on"], logits["off"]) < 1e-5


def test_dense_keeps_nn_dense_names_and_parameters():
    variables = Dense(4, name="fc").init(jax.random.PRNGKey(0), jnp.ones((2, 8)))
    plain = nn.Dense(4, name="fc").init(jax.random.PRNGKey(0), jnp.ones((2, 8)))
    assert jax.tree.map(jnp.shape, variables) == {"params": {"kernel": (8, 4), "bias": (4,)}}
    assert all(jax.tree.leaves(jax.tree.map(jnp.array_equal, variables, plain)))
