"""VGG configurations A, A-LRN, B, C, D, E (+ BN): counts, paper Table 2, parity, scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnx import models
from cnnx.models.vgg import CONFIGS
from tests.models.helpers import abstract_variables, count_params, torch_parity

try:  # Imported at collection: torchvision imported after tensorflow (conftest) segfaults.
    import torch
    import torchvision
except ImportError:
    torch = torchvision = None

# torchvision name -> exact parameter count (torchvision 0.29).
TORCHVISION_COUNTS = {
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
}

# Simonyan & Zisserman, Table 2: "Number of parameters (in millions)", per configuration.
TABLE2 = {"vgg11": 133, "vgg11_lrn": 133, "vgg13": 133, "vgg16c": 134, "vgg16": 138, "vgg19": 144}

# Weight layers per configuration (the "11, 11, 13, 16, 16, 19" of Table 1).
DEPTHS = {"vgg11": 11, "vgg11_lrn": 11, "vgg13": 13, "vgg16c": 16, "vgg16": 16, "vgg19": 19}

PARITY_CASES = [
    pytest.param(name, id=name, marks=() if name in ("vgg11", "vgg11_bn") else pytest.mark.slow)
    for name in TORCHVISION_COUNTS
]


def _randomize_bn(model):
    """Non-trivial BatchNorm statistics, so parity also checks the running averages."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model


@pytest.mark.torch
@pytest.mark.parametrize("name,count", TORCHVISION_COUNTS.items(), ids=list(TORCHVISION_COUNTS))
def test_param_count_matches_torchvision(name, count):
    if torchvision is None:
        pytest.skip("needs torchvision")
    with torch.device("meta"):
        ref = getattr(torchvision.models, name)(weights=None)
    assert sum(p.numel() for p in ref.parameters()) == count
    assert count_params(abstract_variables(name)) == count == models.get_spec(name).param_count


@pytest.mark.parametrize("name,millions", TABLE2.items(), ids=list(TABLE2))
def test_paper_table2_param_counts(name, millions):
    n = count_params(abstract_variables(name))
    assert round(n / 1e6) == millions
    assert n == models.get_spec(name).param_count


@pytest.mark.parametrize("name,depth", DEPTHS.items(), ids=list(DEPTHS))
def test_weight_layers_and_1x1_convs(name, depth):
    params = abstract_variables(name)["params"]
    kernels = [v["kernel"].shape for k, v in params.items() if k != "head"]
    assert len(kernels) + 1 == depth  # + the classifier
    one_by_one = sum(1 for s in kernels if len(s) == 4 and s[:2] == (1, 1))
    assert one_by_one == (3 if name == "vgg16c" else 0)


def test_lrn_variant_differs_only_by_lrn():
    # A-LRN has A's layers plus a parameter-free LRN after conv1 (which takes torchvision-style
    # Sequential index 2, shifting later names by one); with the same weights outputs differ.
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 32, 32, 3))
    kw = dict(width_mult=0.25, fc_features=16)
    a, lrn = models.create("vgg11", **kw), models.create("vgg11_lrn", **kw)
    variables = jax.jit(lambda: lrn.init(jax.random.PRNGKey(1), x, train=False))()
    shifted = {}
    for k, v in variables["params"].items():
        i = int(k.split("_")[1]) if k.startswith("features_") else -1
        shifted[f"features_{i - 1}" if i > 2 else k] = v
    out_a = a.apply({"params": shifted}, x, train=False)
    out_lrn = lrn.apply(variables, x, train=False)
    assert out_a.shape == out_lrn.shape
    assert not np.allclose(out_a, out_lrn)


def test_depth_mult_scales_convs_per_stage():
    params = abstract_variables("vgg16", depth_mult=0.01, width_mult=0.25)["params"]
    convs = [k for k in params if k.startswith("features_")]
    assert len(convs) == len(CONFIGS["D"])  # one 3×3 conv per stage
    deeper = abstract_variables("vgg11", depth_mult=2.0, width_mult=0.25)["params"]
    assert len([k for k in deeper if k.startswith("features_")]) == 2 * 8


@pytest.mark.torch
@pytest.mark.parametrize("name", PARITY_CASES)
def test_torchvision_parity(name):
    if torchvision is None:
        pytest.skip("needs torchvision")
    torch.manual_seed(0)
    ref = _randomize_bn(getattr(torchvision.models, name)(weights=None))
    assert torch_parity(name, ref, 32) < 1e-4


def test_features_mode():
    model = models.create("vgg11", num_classes=0, width_mult=0.25)
    out = jax.eval_shape(
        lambda: model.init_with_output(
            jax.random.PRNGKey(0), jnp.zeros((2, 32, 32, 3)), train=False
        )[0]
    )
    assert out.shape == (2, 1024)
