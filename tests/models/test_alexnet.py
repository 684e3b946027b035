"""AlexNet (torchvision and the 2012 paper) and ZFNet: exact sizes, layer structure, parity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnx import models
from cnnx.layers import LocalResponseNorm
from cnnx.models._alexnet_style import PAPER_LRN
from tests.models.helpers import abstract_variables, count_params, torch_parity

try:  # Imported at collection: torchvision imported after tensorflow (conftest) segfaults.
    import torchvision
except ImportError:
    torchvision = None

# name: exact parameter count (torchvision's for `alexnet`, the layer tables' otherwise)
COUNTS = {
    "alexnet": 61_100_840,
    "alexnet_original": 60_965_224,
    "zfnet": 62_357_608,
}

# name: (resolution, conv kernel shapes (kh, kw, in/groups, out), conv5 map size: a 3/2 max pool
# of it gives the 6×6 that fc6 expects, so the adaptive pool is an identity there)
STRUCTURE = {
    "alexnet_original": (
        227,
        [(11, 11, 3, 96), (5, 5, 48, 256), (3, 3, 256, 384), (3, 3, 192, 384), (3, 3, 192, 256)],
        13,
    ),
    "zfnet": (
        224,
        [(7, 7, 3, 96), (5, 5, 96, 256), (3, 3, 256, 384), (3, 3, 384, 384), (3, 3, 384, 256)],
        13,
    ),
}


@pytest.mark.parametrize("name,count", COUNTS.items(), ids=list(COUNTS))
def test_param_count(name, count):
    assert count_params(abstract_variables(name)) == count
    assert models.get_spec(name).param_count == count


@pytest.mark.parametrize("name", list(STRUCTURE), ids=list(STRUCTURE))
def test_paper_layer_shapes(name):
    resolution, kernels, _ = STRUCTURE[name]
    params = abstract_variables(name, resolution=resolution)["params"]
    assert [tuple(params[f"conv{i + 1}"]["kernel"].shape) for i in range(5)] == kernels
    assert params["fc6"]["kernel"].shape == (6 * 6 * 256, 4096)


@pytest.mark.parametrize("name", list(STRUCTURE), ids=list(STRUCTURE))
def test_conv5_map_size_at_paper_resolution(name):
    resolution, _, size = STRUCTURE[name]
    model = models.create(name)
    x = jnp.zeros((1, resolution, resolution, 3))
    _, state = jax.eval_shape(
        lambda: model.init_with_output(
            jax.random.PRNGKey(0), x, train=False, capture_intermediates=True
        )
    )
    assert state["intermediates"]["conv5"]["__call__"][0].shape[1:3] == (size, size)


def test_lrn_matches_paper_formula():
    # Krizhevsky et al. (2012), §3.3: b = a / (k + alpha * sum a^2)^beta with alpha undivided.
    x = np.random.RandomState(0).randn(1, 2, 2, 12).astype(np.float32) * 10
    out = np.asarray(LocalResponseNorm(**PAPER_LRN).apply({}, jnp.asarray(x)))
    n, k, alpha, beta = 5, 2.0, 1e-4, 0.75
    ref = np.empty_like(x)
    for c in range(12):
        lo, hi = max(0, c - n // 2), min(12, c + n // 2 + 1)
        ref[..., c] = x[..., c] / (k + alpha * np.sum(x[..., lo:hi] ** 2, -1)) ** beta
    np.testing.assert_allclose(out, ref, rtol=1e-5)


@pytest.mark.torch
def test_torchvision_count_and_parity():
    if torchvision is None:
        pytest.skip("needs torchvision")
    import torch

    torch.manual_seed(0)
    ref = torchvision.models.alexnet(weights=None)
    assert sum(p.numel() for p in ref.parameters()) == COUNTS["alexnet"]
    assert torch_parity("alexnet", ref, 63) < 1e-4
