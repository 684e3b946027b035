"""Gradient flow at initialisation: plain vs residual CIFAR networks, and the plotting script."""

import importlib.util
import pathlib

import numpy as np
import pytest

from cnnx.analysis.gradient_flow import layer_gradient_norms

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "gradient_flow.py"


@pytest.mark.slow
def test_residual_keeps_gradient_norms_healthy():
    res = layer_gradient_norms("resnet110_cifar", resolution=16, batch=8)
    plain = layer_gradient_norms("plain110_cifar", resolution=16, batch=8)
    assert len(res) == len(plain) == 110
    assert res[0][0] == "stem/conv" and res[-1][0] == "head/fc"
    res_norms, plain_norms = np.array([n for _, n in res]), np.array([n for _, n in plain])
    assert np.all(np.isfinite(res_norms)) and np.all(res_norms > 0)
    # With train-mode BatchNorm the plain network's gradients explode towards the input
    # (they do not vanish; see cnnx/analysis/gradient_flow.py); shortcuts keep them within a
    # small factor of the output layers'.
    res_ratio = res_norms[0] / res_norms[-2]
    plain_ratio = plain_norms[0] / plain_norms[-2]
    assert res_ratio < 1e3
    assert plain_ratio > 1e3 * res_ratio


def test_script_writes_png(tmp_path):
    spec = importlib.util.spec_from_file_location("gradient_flow_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "flow.png"
    argv = ["--depths=20", "--image_size=8", "--batch_size=4", f"--output={out}"]
    results = script.main(argv)
    assert set(results) == {"plain20_cifar", "resnet20_cifar"}
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_norms_at_given_variables():
    """`variables` replaces the initialisation: the norms at seed 3's initial variables, given
    explicitly, are those of seed 3, not of the default seed 0 (the findings suite passes a
    trained checkpoint's variables this way)."""
    import jax

    from cnnx import models

    images = np.random.RandomState(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
    labels = np.arange(4)
    common = dict(resolution=8, images=images, labels=labels, depth=8)
    k_init = jax.random.split(jax.random.PRNGKey(3), 3)[0]  # seed 3's parameter key
    variables = models.create("resnet20_cifar", depth=8).init(k_init, images, train=False)
    given = layer_gradient_norms("resnet20_cifar", variables=variables, **common)
    assert given == layer_gradient_norms("resnet20_cifar", seed=3, **common)
    assert given != layer_gradient_norms("resnet20_cifar", seed=0, **common)
