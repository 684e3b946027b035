"""Transformer layers on the CPU route (custom gradients) against the plain formulation.

`CNNX_CPU_GRADS=custom` takes LayerNorm, GELU and self-attention with their own VJPs (see
cnnx/layers/transformer.py); `xla` takes flax's LayerNorm, `jax.nn.gelu` and autodiff. Values
and gradients must agree to float rounding, parameters must be the same tree.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnx import models
from cnnx.layers.transformer import MultiHeadSelfAttention, gelu, layer_norm


def _rng(*shape, seed=0, scale=1.0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * scale, jnp.float32)


def _both(monkeypatch, build):
    """build() traced on the plain route and on the custom route: (plain, custom)."""
    out = []
    for route in ("xla", "custom"):
        monkeypatch.setenv("CNNX_CPU_GRADS", route)
        out.append(build())
    return out


def _value_and_grads(module, x, **kwargs):
    variables = module.init(jax.random.PRNGKey(0), x, **kwargs)
    # A loss that weighs every output differently, so no gradient term cancels by symmetry.
    weights = _rng(*module.apply(variables, x, **kwargs).shape, seed=7)

    def loss(variables, x):
        return jnp.sum(weights * module.apply(variables, x, **kwargs).astype(jnp.float32))

    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(variables, x)
    return variables, value, grads


def _assert_close_trees(a, b, rtol, atol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert u.shape == v.shape and u.dtype == v.dtype
        np.testing.assert_allclose(np.asarray(u, np.float32), np.asarray(v, np.float32), rtol, atol)


@pytest.mark.parametrize("shape", [(2, 5, 24), (3, 40)], ids=["tokens", "rows"])
def test_layer_norm_matches_flax(shape, monkeypatch):
    # An offset and a spread that make the one-pass variance lose digits: the two-pass formula
    # of torch (and of flax with use_fast_variance=False) must be kept.
    x = _rng(*shape, scale=3.0) + 100.0

    def build():
        module = layer_norm(1e-6, "norm")
        variables = module.init(jax.random.PRNGKey(0), x)
        # Non-trivial scale and bias, so their gradients and their use are both checked.
        variables = {
            "params": {
                "scale": 1 + _rng(shape[-1], seed=1, scale=0.1),
                "bias": _rng(shape[-1], seed=2, scale=0.1),
            }
        }
        weights = _rng(*shape, seed=3)
        loss = lambda v, x: jnp.sum(weights * module.apply(v, x))  # noqa: E731
        return module.apply(variables, x), jax.jit(jax.grad(loss, argnums=(0, 1)))(variables, x)

    (ref, ref_grads), (out, grads) = _both(monkeypatch, build)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    _assert_close_trees(grads, ref_grads, rtol=1e-4, atol=1e-4)


def test_layer_norm_same_parameters_and_dtype(monkeypatch):
    x = _rng(2, 3, 16).astype(jnp.bfloat16)

    def build():
        module = layer_norm(1e-5, "norm", dtype=jnp.bfloat16)
        variables = module.init(jax.random.PRNGKey(0), x)
        return variables, module.apply(variables, x)

    (ref_vars, ref), (variables, out) = _both(monkeypatch, build)
    _assert_close_trees(variables, ref_vars, rtol=0, atol=0)
    assert out.dtype == ref.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32), atol=2e-2)


def test_gelu_matches_exact_gelu(monkeypatch):
    # Both tails and the centre: the erf form (torch's) against jax's erfc form.
    x = jnp.linspace(-12.0, 12.0, 2001, dtype=jnp.float32)
    ref_grad, grad = _both(monkeypatch, lambda: jax.jit(jax.vmap(jax.grad(gelu)))(x))
    ref, out = _both(monkeypatch, lambda: jax.jit(gelu)(x))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-6)
    # The derivative formula itself, against finite differences in float64.
    x64 = np.linspace(-6, 6, 121)
    from scipy.special import erf

    f = lambda t: 0.5 * t * (1 + erf(t / np.sqrt(2)))  # noqa: E731
    numeric = (f(x64 + 1e-6) - f(x64 - 1e-6)) / 2e-6
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    analytic = jax.jit(jax.vmap(jax.grad(gelu)))(jnp.asarray(x64, jnp.float32))
    np.testing.assert_allclose(analytic, numeric, atol=1e-5)


@pytest.mark.parametrize("lead", [(2,), (2, 3)], ids=["batch", "batch_windows"])
def test_self_attention_matches_plain(lead, monkeypatch):
    x = _rng(*lead, 7, 32)
    module = MultiHeadSelfAttention(num_heads=4)
    (ref_vars, ref, ref_grads), (variables, out, grads) = _both(
        monkeypatch, lambda: _value_and_grads(module, x, train=True)
    )
    _assert_close_trees(variables, ref_vars, rtol=0, atol=0)
    np.testing.assert_allclose(out, ref, rtol=1e-5)
    _assert_close_trees(grads, ref_grads, rtol=1e-4, atol=1e-5)


def test_self_attention_dropout_keeps_plain_route(monkeypatch):
    """Attention dropout while training needs the weights' mask: the plain formulation."""
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    x = _rng(2, 5, 16)
    module = MultiHeadSelfAttention(num_heads=2, attention_dropout=0.5)
    variables = module.init(jax.random.PRNGKey(0), x, train=False)
    rngs = {"dropout": jax.random.PRNGKey(1)}
    jaxpr = str(jax.make_jaxpr(lambda x: module.apply(variables, x, train=True, rngs=rngs))(x))
    assert "custom_vjp" not in jaxpr
    out = module.apply(variables, x, train=True, rngs=rngs)
    assert not np.allclose(out, module.apply(variables, x, train=False))
    assert "custom_vjp" in str(jax.make_jaxpr(lambda x: module.apply(variables, x, train=False))(x))


def test_vit_step_matches_plain(monkeypatch):
    """A whole (tiny) ViT: logits, loss and every parameter's gradient on both routes."""
    x = _rng(2, 32, 32, 3)
    model = models.create("vit_ti_16", num_classes=10, depth_mult=0.25)

    def build():
        variables = model.init(jax.random.PRNGKey(0), x, train=False)
        # The class token and position embedding start at zero / tiny: perturb every leaf so
        # each gradient path carries signal.
        leaves, tree = jax.tree.flatten(variables)
        keys = jax.random.split(jax.random.PRNGKey(3), len(leaves))
        leaves = [v + 0.05 * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys)]
        variables = jax.tree.unflatten(tree, leaves)

        def loss(variables):
            logits = model.apply(variables, x, train=True)
            return -jnp.mean(jax.nn.log_softmax(logits)[:, 0]), logits

        (value, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables)
        return value, logits, grads

    (ref_value, ref_logits, ref_grads), (value, logits, grads) = _both(monkeypatch, build)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    _assert_close_trees(grads, ref_grads, rtol=1e-3, atol=1e-5)


def test_off_switch_is_flax(monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "xla")
    assert isinstance(layer_norm(1e-6, "n"), nn.LayerNorm)
    x = jnp.ones((2, 5, 16), jnp.float32)
    module = MultiHeadSelfAttention(num_heads=2)
    variables = module.init(jax.random.PRNGKey(0), x, train=False)
    grad = jax.grad(lambda v, x: module.apply(v, x, train=False).sum(), argnums=(0, 1))
    assert "custom_vjp" not in str(jax.make_jaxpr(grad)(variables, x))
    assert "custom_vjp" not in str(jax.make_jaxpr(jax.grad(lambda x: gelu(x).sum()))(x))
