"""cnnx.layers.pool: torch's max pooling (floor and ceil mode) and adaptive average pooling."""

import jax.numpy as jnp
import numpy as np
import pytest

from cnnx.layers.pool import adaptive_avg_pool, max_pool, torch_max_pool

try:  # Imported at collection: torch imported after tensorflow (conftest) segfaults.
    import torch
except ImportError:
    torch = None

# (size, kernel, stride, padding, ceil_mode): SENet's and GoogLeNet's ceil-mode pools, AlexNet's
# floor-mode pool, GoogLeNet's padded stride-1 pool, a ceil window that would start in padding.
MAX_CASES = [
    (7, 3, 2, 0, True),
    (8, 3, 2, 0, True),
    (16, 3, 2, 0, True),
    (17, 3, 2, 0, True),
    (13, 3, 2, 0, False),
    (9, 3, 1, 1, True),
    (6, 2, 2, 1, True),
]


def _nhwc(x):
    return jnp.asarray(x.transpose(0, 2, 3, 1))


@pytest.mark.torch
@pytest.mark.parametrize("case", MAX_CASES, ids=[str(c) for c in MAX_CASES])
def test_torch_max_pool_matches_torch(case):
    if torch is None:
        pytest.skip("needs torch")
    size, k, s, p, ceil = case
    x = np.random.RandomState(size).randn(2, 3, size, size).astype(np.float32)
    ref = torch.nn.MaxPool2d(k, s, p, ceil_mode=ceil)(torch.from_numpy(x)).numpy()
    out = np.asarray(torch_max_pool(_nhwc(x), k, s, p, ceil_mode=ceil)).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(out, ref)


def test_torch_max_pool_rejects_too_small_inputs():
    with pytest.raises(ValueError, match="too small"):
        torch_max_pool(jnp.ones((1, 2, 2, 1)), 3, 2)


def test_max_pool_same_padding_never_picks_the_padding():
    x = -jnp.ones((1, 3, 3, 1))
    np.testing.assert_array_equal(max_pool(x, (3, 3), (2, 2), "SAME"), -1.0)


@pytest.mark.torch
@pytest.mark.parametrize("size,out", [(6, 6), (13, 6), (7, 3), (1, 4), (5, 7), (12, 4)])
def test_adaptive_avg_pool_matches_torch(size, out):
    if torch is None:
        pytest.skip("needs torch")
    x = np.random.RandomState(size).randn(2, 3, size, size).astype(np.float32)
    ref = torch.nn.AdaptiveAvgPool2d(out)(torch.from_numpy(x)).numpy()
    got = np.asarray(adaptive_avg_pool(_nhwc(x), out)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
