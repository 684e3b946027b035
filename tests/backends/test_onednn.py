"""oneDNN convolutions (cnnx.backends.cpu.onednn): parity with lax, routing, switch, build."""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnnx import backends
from cnnx.backends.cpu import conv as cpu_conv
from cnnx.backends.cpu import onednn
from cnnx.models import registry
from tests.backends.parity import rel_err

_NHWC = ("NHWC", "HWIO", "NHWC")
needs_onednn = pytest.mark.skipif(not onednn.available(), reason=onednn.status())

# (input NHWC, kernel HWIO, strides, padding, rhs dilation, groups)
CASES = {
    "dense_3x3": ((2, 9, 11, 16), (3, 3, 16, 24), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
    "dense_stride2_asymmetric": (
        (2, 9, 11, 16),
        (3, 3, 16, 8),
        (2, 2),
        ((0, 1), (1, 0)),
        (1, 1),
        1,
    ),
    "pointwise_stride2": ((2, 9, 11, 32), (1, 1, 32, 64), (2, 2), "VALID", (1, 1), 1),
    "stem_7x7": ((2, 32, 32, 3), (7, 7, 3, 16), (2, 2), ((3, 3), (3, 3)), (1, 1), 1),
    "dilated_same": ((1, 12, 12, 16), (3, 3, 16, 16), (1, 1), "SAME", (2, 2), 1),
    "grouped_resnext": ((2, 8, 8, 128), (3, 3, 4, 128), (1, 1), ((1, 1), (1, 1)), (1, 1), 32),
    "grouped_strided": ((2, 8, 8, 64), (3, 3, 8, 64), (2, 2), ((1, 1), (1, 1)), (1, 1), 8),
    "depthwise_3x3": ((2, 10, 10, 32), (3, 3, 1, 32), (1, 1), "SAME", (1, 1), 32),
    "depthwise_5x5_stride2": ((2, 11, 11, 48), (5, 5, 1, 48), (2, 2), ((1, 2), (1, 2)), (1, 1), 48),
    "depthwise_7x7": ((1, 14, 14, 32), (7, 7, 1, 32), (1, 1), ((3, 3), (3, 3)), (1, 1), 32),
    "depthwise_multiplier": ((2, 9, 9, 16), (3, 3, 1, 32), (1, 1), "SAME", (1, 1), 16),
}


def _lax(x, w, strides, padding, dilation, groups):
    return lax.conv_general_dilated(
        x,
        w,
        strides,
        padding,
        rhs_dilation=dilation,
        dimension_numbers=_NHWC,
        feature_group_count=groups,
    )


def _lax_args(args, x, w):
    return _lax(x, w, *args)


def _onednn_args(args, x, w):
    return onednn._conv(x, w, *args)


def _values_and_grads(f, x, w, dy):
    y, vjp = jax.vjp(f, x, w)
    return (y, *vjp(dy))


@needs_onednn
@pytest.mark.parametrize("case", sorted(CASES))
def test_values_and_both_gradients_match_lax(case):
    xs, ws, strides, padding, dilation, groups = CASES[case]
    kx, kw, ky = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, xs)
    w = jax.random.normal(kw, ws) / np.sqrt(np.prod(ws[:3]))
    args = (strides, padding, dilation, groups)
    expected_y = _lax(x, w, *args)
    dy = jax.random.normal(ky, expected_y.shape)
    expected = _values_and_grads(lambda x, w: _lax(x, w, *args), x, w, dy)
    got = _values_and_grads(jax.jit(lambda x, w: onednn.conv(x, w, *args)), x, w, dy)
    for name, e, g in zip(("output", "input gradient", "kernel gradient"), expected, got):
        assert g.shape == e.shape and g.dtype == e.dtype, name
        assert rel_err(g, e) < 1e-5, (case, name, rel_err(g, e))


@needs_onednn
def test_bfloat16_matches_lax_to_bfloat16_rounding():
    xs, ws, strides, padding, dilation, groups = CASES["grouped_resnext"]
    x = jax.random.normal(jax.random.PRNGKey(1), xs).astype(jnp.bfloat16)
    w = (jax.random.normal(jax.random.PRNGKey(2), ws) / 6).astype(jnp.bfloat16)
    args = (strides, padding, dilation, groups)
    expected = _lax(x.astype(jnp.float32), w.astype(jnp.float32), *args)
    dy = jax.random.normal(jax.random.PRNGKey(3), expected.shape).astype(jnp.bfloat16)
    got = _values_and_grads(lambda x, w: onednn.conv(x, w, *args), x, w, dy)
    want = _values_and_grads(
        lambda x, w: _lax(x, w, *args),
        x.astype(jnp.float32),
        w.astype(jnp.float32),
        dy.astype(jnp.float32),
    )
    for e, g in zip(want, got):
        assert g.dtype == jnp.bfloat16
        assert rel_err(g, e) < 2e-2


@needs_onednn
def test_vmap_and_per_example_gradients():
    xs, ws, strides, padding, dilation, groups = CASES["depthwise_3x3"]
    x = jax.random.normal(jax.random.PRNGKey(0), xs)
    w = jax.random.normal(jax.random.PRNGKey(1), ws)
    args = (strides, padding, dilation, groups)

    def per_example(f):
        return jax.vmap(jax.grad(lambda w, x: jnp.sum(f(x[None], w, *args) ** 2)), (None, 0))(w, x)

    assert rel_err(per_example(onednn.conv), per_example(_lax)) < 1e-5


def _record_convolutions(monkeypatch, name, shape):
    """Every distinct convolution `name` runs on `shape` inputs, as conv() arguments."""
    calls = set()
    recorded = onednn._conv

    def record(lhs, rhs, strides, pads, dilation, groups):
        calls.add((lhs.shape, rhs.shape, strides, pads, dilation, groups))
        return recorded(lhs, rhs, strides, pads, dilation, groups)

    monkeypatch.setenv(onednn.SWITCH, "on")
    monkeypatch.setattr(onednn, "_conv", record)
    model = registry.create(name, num_classes=10)
    jax.eval_shape(
        lambda x: model.init(jax.random.PRNGKey(0), x, train=False),
        jax.ShapeDtypeStruct(shape, jnp.float32),
    )
    return sorted(calls)


@needs_onednn
@pytest.mark.parametrize("name", ["resnext50_32x4d", "efficientnet_b0", "densenet121"])
def test_every_convolution_of_a_model_matches_lax(monkeypatch, name):
    """Per layer, not per model: a randomly initialised deep network in training mode turns
    float rounding into percent-level gradient differences (a 1e-6 change of the input moves
    ResNeXt-50's gradients by 1.4%), so model-level gradients cannot tell a bug from noise."""
    calls = _record_convolutions(monkeypatch, name, (2, 64, 64, 3))
    assert len(calls) >= 10
    groups_seen = {g for *_, g in calls}
    assert max(groups_seen) > 1 or name == "densenet121"
    for xs, ws, strides, pads, dilation, groups in calls:
        x = jax.random.normal(jax.random.PRNGKey(0), xs)
        w = jax.random.normal(jax.random.PRNGKey(1), ws) / np.sqrt(np.prod(ws[:3]))
        args = (strides, pads, dilation, groups)
        dy = jax.random.normal(jax.random.PRNGKey(2), _lax(x, w, *args).shape)
        expected = _values_and_grads(functools.partial(_lax_args, args), x, w, dy)
        got = _values_and_grads(functools.partial(_onednn_args, args), x, w, dy)
        for e, g in zip(expected, got):
            assert rel_err(g, e) < 1e-5, (xs, ws, args)


@needs_onednn
def test_model_logits_match_xla(monkeypatch):
    model = registry.create("resnext50_32x4d", num_classes=10)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 64, 64, 3))
    variables = model.init(jax.random.PRNGKey(1), x, train=False)
    logits = {}
    for mode in ("off", "on"):
        monkeypatch.setenv(onednn.SWITCH, mode)
        logits[mode] = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    assert rel_err(logits["on"], logits["off"]) < 1e-5


def _conv_jaxpr(x, w, groups=1):
    return str(
        jax.make_jaxpr(
            lambda x, w: cpu_conv.conv_general_dilated(
                x, w, (1, 1), "SAME", dimension_numbers=_NHWC, feature_group_count=groups
            )
        )(x, w)
    )


@needs_onednn
def test_switch_routes_convolutions(monkeypatch):
    x, w = jnp.ones((2, 8, 8, 16)), jnp.ones((3, 3, 4, 16))
    monkeypatch.setenv(onednn.SWITCH, "on")
    assert "cnnx_onednn_conv_fwd" in _conv_jaxpr(x, w, groups=4)
    with backends.lax_only():  # the analysis tools read conv equations
        assert "conv_general_dilated" in _conv_jaxpr(x, w, groups=4)
    monkeypatch.setenv(onednn.SWITCH, "off")
    assert "cnnx_onednn" not in _conv_jaxpr(x, w, groups=4)
    # 'auto' with this process's 8 devices: XLA would replicate each call on every device.
    monkeypatch.setenv(onednn.SWITCH, "auto")
    assert jax.device_count() > 1 and not onednn.wanted()
    assert "cnnx_onednn" not in _conv_jaxpr(x, w, groups=4)


@needs_onednn
def test_unusual_padding_stays_with_xla(monkeypatch):
    """Padding wider than the kernel (oneDNN's GEMM fallback crashed on such a layer)."""
    monkeypatch.setenv(onednn.SWITCH, "on")
    x, w = jnp.ones((1, 7, 1, 16)), jnp.ones((1, 3, 16, 8))
    assert not onednn.fast(x, w, (1, 1), ((2, 2), (0, 0)), (1, 1), 1)
    assert onednn.fast(x, w, (1, 1), ((0, 0), (1, 1)), (1, 1), 1)
    # bfloat16 asks oneDNN about its bfloat16 kernels, not the float32 ones.
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    assert onednn.fast(xb, wb, (1, 1), ((0, 0), (1, 1)), (1, 1), 1)
    geometry = (1, 7, 1, 16, 7, 1, 8, 1, 3, 1, 1, 1, 0, 1, 0, 1, 1, 1)
    bf16, f32 = (onednn.implementations(geometry, t) for t in ("bfloat16", "float32"))
    assert bf16 != f32  # e.g. "brgconv:avx512_core_bf16" against "brgconv:avx512_core"
    jaxpr = str(
        jax.make_jaxpr(
            lambda x, w: cpu_conv.conv_general_dilated(
                x, w, (1, 1), ((2, 2), (0, 0)), dimension_numbers=_NHWC
            )
        )(x, w)
    )
    assert "cnnx_onednn" not in jaxpr and "conv_general_dilated" in jaxpr


def test_on_without_the_library_says_how_to_build(monkeypatch):
    monkeypatch.setattr(onednn, "_load", lambda: (None, "the oneDNN extension is not built"))
    monkeypatch.setenv(onednn.SWITCH, "on")
    with pytest.raises(onednn.OneDNNUnavailable, match=r"CNNX_ONEDNN=on, but .* not built"):
        _conv_jaxpr(jnp.ones((1, 8, 8, 8)), jnp.ones((3, 3, 8, 8)))
    monkeypatch.setenv(onednn.SWITCH, "auto")  # falls back to XLA without a word
    assert "conv_general_dilated" in _conv_jaxpr(jnp.ones((1, 8, 8, 8)), jnp.ones((3, 3, 8, 8)))


@needs_onednn
def test_on_refuses_another_backend(monkeypatch):
    monkeypatch.setenv(onednn.SWITCH, "on")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    with pytest.raises(onednn.OneDNNUnavailable, match="CPU only"):
        onednn.wanted()


def test_switch_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv(onednn.SWITCH, "yes please")
    with pytest.raises(ValueError, match="expected auto, on or off"):
        backends.switches.onednn()


def test_build_without_onednn_names_the_packages(monkeypatch):
    monkeypatch.setattr(onednn, "_dist_file", lambda dist, suffix: None)
    with pytest.raises(onednn.BuildError, match="pip install onednn-cpu-gomp"):
        onednn.build(quiet=True)


def test_library_name_follows_the_source(monkeypatch, tmp_path):
    """A build for another source (or jaxlib, or oneDNN) is never loaded."""
    if onednn.library_path() is None:
        pytest.skip("oneDNN is not installed")
    changed = tmp_path / "onednn_conv.cc"
    changed.write_bytes(onednn.SOURCE.read_bytes() + b"\n// changed\n")
    before = onednn.library_path()
    monkeypatch.setattr(onednn, "SOURCE", changed)
    assert onednn.library_path() != before


@needs_onednn
def test_one_device_process_trains_through_onednn():
    """'auto' in a plain one-device process: the train step's program calls oneDNN."""
    script = """
import jax, jax.numpy as jnp
from cnnx.backends.cpu import onednn
from cnnx.models import registry
assert jax.device_count() == 1 and onednn.wanted()
model = registry.create("resnet18", num_classes=4)
x = jax.random.normal(jax.random.PRNGKey(0), (4, 32, 32, 3))
y = jnp.arange(4)
v = model.init(jax.random.PRNGKey(1), x, train=False)
def loss(p, bs):
    out, new = model.apply({"params": p, "batch_stats": bs}, x, train=True, mutable=["batch_stats"])
    logp = jax.nn.log_softmax(out)
    return -jnp.mean(logp[jnp.arange(4), y]), new["batch_stats"]
step = jax.jit(jax.value_and_grad(loss, has_aux=True))
assert "cnnx_onednn_conv_bwd_weights" in step.lower(v["params"], v["batch_stats"]).as_text()
p, bs, losses = v["params"], v["batch_stats"], []
for _ in range(5):
    (l, bs), g = step(p, bs)
    p = jax.tree.map(lambda a, b: a - 0.05 * b, p, g)
    losses.append(float(l))
assert losses[-1] < losses[0], losses
print("ok", losses)
"""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env[onednn.SWITCH] = "auto"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ok" in done.stdout


def test_describe_says_what_runs_and_why(monkeypatch):
    monkeypatch.setenv(onednn.SWITCH, "off")
    assert onednn.describe() == "XLA (CNNX_ONEDNN=off)"
    monkeypatch.setenv(onednn.SWITCH, "auto")
    if onednn.available():  # this test process has 8 devices
        assert "8 devices" in onednn.describe()
        monkeypatch.setenv(onednn.SWITCH, "on")
        assert onednn.describe().startswith("oneDNN 3.")
    monkeypatch.setattr(onednn, "_load", lambda: (None, "the oneDNN extension is not built"))
    monkeypatch.setenv(onednn.SWITCH, "auto")
    assert onednn.describe() == "XLA (the oneDNN extension is not built)"
