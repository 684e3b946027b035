"""cnnx.backends.cpu.depthwise: the values and both gradients of lax's depthwise convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnnx import backends
from cnnx.backends.cpu import conv as cpu_conv
from cnnx.backends.cpu import depthwise
from tests.backends.parity import rel_err

DN = ("NHWC", "HWIO", "NHWC")

# (H, W, C, multiplier, kernel, stride, dilation, padding)
CASES = [
    (8, 8, 4, 1, 3, 1, 1, 1),  # MobileNet's 3x3, torch padding
    (9, 9, 4, 1, 3, 2, 1, 1),  # stride 2, odd size
    (10, 10, 3, 1, 3, 2, 1, "SAME"),  # TF SAME with an even stride: asymmetric padding
    (11, 11, 5, 1, 5, 1, 1, "SAME"),
    (12, 12, 4, 1, 5, 2, 1, 2),  # EfficientNet's strided 5x5
    (9, 9, 4, 1, 7, 1, 1, 3),  # ConvNeXt's 7x7
    (13, 13, 3, 1, 7, 2, 1, "SAME"),  # NASNet's strided 7x7
    (10, 10, 4, 1, 3, 1, 2, 2),  # dilation
    (11, 11, 2, 1, 3, 2, 2, "SAME"),  # dilation + stride
    (8, 8, 3, 2, 3, 1, 1, 1),  # channel multiplier 2
    (9, 9, 2, 3, 3, 2, 1, "VALID"),  # multiplier 3, stride 2, no padding
    (7, 10, 4, 1, 3, 1, 1, ((0, 2), (1, 0))),  # non-square, asymmetric explicit padding
    (9, 9, 4, 1, (3, 5), (1, 2), (2, 1), ((1, 1), (2, 2))),  # per-axis kernel/stride/dilation
    (6, 6, 4, 1, 3, 1, 1, ((-1, 1), (1, -1))),  # negative padding crops
    (7, 7, 4, 1, 3, 2, 1, ((-1, 2), (2, -1))),  # negative padding, strided
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pads(p):
    if isinstance(p, int):
        return [(p, p), (p, p)]
    return p


def _loss(conv, case):
    _, _, c, _, _, s, d, p = case

    def loss(x, w):
        y = conv(
            x,
            w,
            _pair(s),
            _pads(p),
            rhs_dilation=_pair(d),
            dimension_numbers=DN,
            feature_group_count=c,
        )
        return jnp.sum(jnp.sin(y) * jnp.arange(y.size).reshape(y.shape) / y.size), y

    return loss


def _inputs(case, dtype=jnp.float32, seed=0):
    h, w, c, m, k, *_ = case
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((2, h, w, c)), dtype)
    kernel = jnp.asarray(rng.standard_normal((*_pair(k), 1, c * m)), dtype)
    return x, kernel


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_values_and_gradients_match_lax(case, monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    x, w = _inputs(case)
    grad = jax.value_and_grad(_loss(lax.conv_general_dilated, case), (0, 1), has_aux=True)
    (_, ref_y), ref_g = jax.jit(grad)(x, w)
    ours = jax.value_and_grad(_loss(cpu_conv.conv_general_dilated, case), (0, 1), has_aux=True)
    text = str(jax.make_jaxpr(ours)(x, w))
    assert "conv_general_dilated" not in text  # it did take the depthwise route
    (_, y), g = jax.jit(ours)(x, w)
    assert y.shape == ref_y.shape
    assert rel_err(y, ref_y) < 1e-5
    assert rel_err(g[0], ref_g[0]) < 1e-5  # input gradient
    assert rel_err(g[1], ref_g[1]) < 1e-5  # weight gradient


def test_bfloat16_accumulates_in_float32(monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    case = (16, 16, 8, 1, 7, 1, 1, 3)
    x, w = _inputs(case, jnp.bfloat16)
    ref = jax.grad(lambda x, w: _loss(lax.conv_general_dilated, case)(x, w)[0], (0, 1))
    ours = jax.grad(lambda x, w: _loss(cpu_conv.conv_general_dilated, case)(x, w)[0], (0, 1))
    x32, w32 = x.astype(jnp.float32), w.astype(jnp.float32)
    exact = ref(x32, w32)
    for got in ours(x, w):
        assert got.dtype == jnp.bfloat16
    for got, want in zip(ours(x, w), exact):
        assert rel_err(got, want) < 2e-2  # bfloat16 inputs and outputs, float32 sums


def test_switch_off_and_analysis_tracing_keep_lax(monkeypatch):
    case = CASES[0]
    x, w = _inputs(case)
    monkeypatch.setenv("CNNX_CPU_GRADS", "xla")
    assert "conv_general_dilated" in str(
        jax.make_jaxpr(_loss(cpu_conv.conv_general_dilated, case))(x, w)
    )
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    with backends.lax_only():
        assert "conv_general_dilated" in str(
            jax.make_jaxpr(_loss(cpu_conv.conv_general_dilated, case))(x, w)
        )
    assert "conv_general_dilated" not in str(
        jax.make_jaxpr(_loss(cpu_conv.conv_general_dilated, case))(x, w)
    )


def test_grouped_but_not_depthwise_stays_lax(monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    x = jnp.ones((1, 6, 6, 8))
    w = jnp.ones((3, 3, 2, 8))
    f = lambda x, w: cpu_conv.conv_general_dilated(  # noqa: E731
        x, w, (1, 1), "SAME", dimension_numbers=DN, feature_group_count=4
    )
    assert "conv_general_dilated" in str(jax.make_jaxpr(f)(x, w))


def test_bad_kernel_shape_raises():
    with pytest.raises(ValueError, match="depthwise kernel"):
        depthwise.depthwise_conv(jnp.ones((1, 5, 5, 4)), jnp.ones((3, 3, 1, 6)))


def test_auto_takes_only_layers_large_enough(monkeypatch):
    """On 'auto' (CPU), tiny depthwise layers keep XLA's convolution (cheaper to compile)."""
    monkeypatch.setenv("CNNX_CPU_GRADS", "auto")
    w = jax.ShapeDtypeStruct((3, 3, 1, 8), jnp.float32)

    def jaxpr(n, size):
        x = jax.ShapeDtypeStruct((n, size, size, 8), jnp.float32)
        f = lambda x, w: cpu_conv.conv_general_dilated(  # noqa: E731
            x, w, (1, 1), "SAME", dimension_numbers=DN, feature_group_count=8
        )
        return str(jax.make_jaxpr(f)(x, w))

    on_cpu = jax.default_backend() == "cpu"
    assert "conv_general_dilated" in jaxpr(2, 16)  # 4k elements
    assert ("conv_general_dilated" in jaxpr(2, 64)) != on_cpu  # 64k elements
