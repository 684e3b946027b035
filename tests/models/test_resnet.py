"""ResNet / ResNeXt / Wide ResNet / plain and CIFAR networks: counts, parity, options."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from cnnx import models
from cnnx.layers import DropPath
from cnnx.models.resnet import Bottleneck
from tests.models.helpers import abstract_variables, count_params, torch_parity

try:  # Imported at collection: torchvision imported after tensorflow (conftest) segfaults.
    import torchvision
except ImportError:
    torchvision = None

# torchvision name -> exact parameter count (torchvision 0.29).
TORCHVISION_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
}

# He et al. 2015, Table 6: parameters of the CIFAR ResNets, as printed (millions).
CIFAR_TABLE6 = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}

# (name, resolution); parity at 64 px, the cheapest size that keeps every stage > 1×1.
PARITY_CASES = [
    pytest.param("resnet18", 64, id="resnet18"),
    pytest.param("resnet50", 64, id="resnet50", marks=pytest.mark.slow),
    pytest.param("resnext50_32x4d", 64, id="resnext50_32x4d", marks=pytest.mark.slow),
    pytest.param("wide_resnet50_2", 64, id="wide_resnet50_2", marks=pytest.mark.slow),
]

PLAIN_PAIRS = [("plain18", "resnet18"), ("plain34", "resnet34")] + [
    (f"plain{d}_cifar", f"resnet{d}_cifar") for d in CIFAR_TABLE6
]


def randomize_batch_norm(torch_model, seed: int = 0):
    """Random BN statistics and affine parameters, so parity also checks their conversion."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in torch_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return torch_model


@pytest.mark.torch
@pytest.mark.parametrize("name", list(TORCHVISION_COUNTS), ids=list(TORCHVISION_COUNTS))
def test_param_count_matches_torchvision(name):
    if torchvision is None:
        pytest.skip("needs torchvision")
    ref = sum(p.numel() for p in getattr(torchvision.models, name)().parameters())
    assert ref == TORCHVISION_COUNTS[name]
    assert count_params(abstract_variables(name)) == ref
    assert models.get_spec(name).param_count == ref
    assert models.get_spec(name).reference == f"torchvision:{name}"


@pytest.mark.parametrize("depth", list(CIFAR_TABLE6), ids=[f"d{d}" for d in CIFAR_TABLE6])
def test_cifar_counts_match_table6(depth):
    for kind in ("resnet", "plain"):
        n = count_params(abstract_variables(f"{kind}{depth}_cifar"))
        digits = 1 if depth == 110 else 2
        assert round(n / 1e6, digits) == CIFAR_TABLE6[depth]


@pytest.mark.torch
@pytest.mark.parametrize("name,resolution", PARITY_CASES)
def test_torchvision_parity(name, resolution):
    if torchvision is None:
        pytest.skip("needs torchvision")
    torch_model = randomize_batch_norm(getattr(torchvision.models, name)())
    assert torch_parity(name, torch_model, resolution) < 1e-4


@pytest.mark.parametrize("plain,residual", PLAIN_PAIRS, ids=[p for p, _ in PLAIN_PAIRS])
def test_plain_nets_have_no_shortcut_params(plain, residual):
    flat = traverse_util.flatten_dict(abstract_variables(plain)["params"], sep="/")
    assert not [k for k in flat if "downsample" in k]
    res = traverse_util.flatten_dict(abstract_variables(residual)["params"], sep="/")
    shortcut = sum(int(np.prod(v.shape)) for k, v in res.items() if "downsample" in k)
    # Same layers otherwise: the counts differ by exactly the projection shortcuts.
    assert count_params({"params": flat}) == count_params({"params": res}) - shortcut


def test_stride_in_1x1():
    x = jnp.ones((1, 8, 8, 16))
    shapes = {}
    for v1 in (False, True):
        block = Bottleneck(8, strides=2, projection=True, stride_in_1x1=v1)
        out, state = block.init_with_output(
            jax.random.PRNGKey(0), x, train=False, capture_intermediates=True
        )
        inter = state["intermediates"]
        shapes[v1] = (inter["conv1"]["__call__"][0].shape, inter["conv2"]["__call__"][0].shape)
        assert out.shape == (1, 4, 4, 32)
    assert shapes[False] == ((1, 8, 8, 8), (1, 4, 4, 8))  # v1.5: stride in the 3×3
    assert shapes[True] == ((1, 4, 4, 8), (1, 4, 4, 8))  # v1: stride in the first 1×1
    assert models.get_spec("resnet50_v1").kwargs["stride_in_1x1"]
    assert count_params(abstract_variables("resnet50_v1")) == TORCHVISION_COUNTS["resnet50"]


def drop_path_rates_seen(model, x):
    """The rate of every DropPath in call order (traced with eval_shape: nothing is computed)."""
    seen = []

    def record(f, args, kwargs, context):
        if isinstance(context.module, DropPath) and context.method_name == "__call__":
            seen.append(context.module.rate)
        return f(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x, train=False))
    return seen


def check_drop_path(name, overrides, blocks, rate=0.3):
    """Rates linear in block index (0 … rate); identity in eval; active in train."""
    r = models.get_spec(name).test_resolution
    x = jax.random.normal(jax.random.PRNGKey(1), (4, r, r, 3))
    model = models.create(name, drop_path_rate=rate, **overrides)
    base = models.create(name, drop_path_rate=0.0, **overrides)
    np.testing.assert_allclose(drop_path_rates_seen(model, x), np.linspace(0, rate, blocks))
    variables = jax.jit(lambda: model.init(jax.random.PRNGKey(0), x, train=False))()

    @jax.jit
    def outputs(variables):
        train = dict(train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.PRNGKey(3)})
        return (
            model.apply(variables, x, train=False),
            base.apply(variables, x, train=False),
            model.apply(variables, x, **train)[0],
            base.apply(variables, x, **train)[0],
        )

    eval_drop, eval_base, train_drop, train_base = outputs(variables)
    np.testing.assert_array_equal(eval_drop, eval_base)
    assert not np.allclose(train_drop, train_base)


DROP_PATH_CASES = [
    pytest.param("resnet20_cifar", dict(depth_mult=0.34), 6, id="resnet20_cifar"),
    pytest.param("resnext50_32x4d", dict(width_mult=0.25, depth_mult=0.01), 4, id="resnext50"),
]


@pytest.mark.parametrize("name,overrides,blocks", DROP_PATH_CASES)
def test_drop_path_linear_and_identity_in_eval(name, overrides, blocks):
    check_drop_path(name, overrides, blocks)
