"""SENet (timm legacy_* layout): counts, timm parity, ceil-mode pooling, stochastic depth."""

import jax
import pytest

from cnnx import models
from tests.models.helpers import abstract_variables, count_params, torch_parity
from tests.models.test_resnet import check_drop_path, randomize_batch_norm

try:  # Imported at collection: torch imported after tensorflow (conftest) segfaults.
    import timm
    import torch
except ImportError:
    timm = torch = None

# cnnx name -> exact parameter count of timm's legacy_<name> (timm 1.0).
TIMM_COUNTS = {
    "seresnet50": 28_088_024,
    "seresnet101": 49_326_872,
    "seresnet152": 66_821_848,
    "seresnext50_32x4d": 27_559_896,
    "senet154": 115_088_984,
}

# (name, resolution): 64 px keeps every stage above 1×1 and exercises the ceil-mode pool
# (32 -> 16, not 15); SENet-154 at 32 px, the cheapest size that runs every layer.
PARITY_CASES = [
    pytest.param("seresnet50", 64, id="seresnet50"),
    pytest.param("seresnext50_32x4d", 64, id="seresnext50_32x4d"),
    pytest.param("senet154", 32, id="senet154", marks=pytest.mark.slow),
]


def _timm_model(name):
    if timm is None:
        pytest.skip("needs timm")
    return timm.create_model(f"legacy_{name}", pretrained=False)


@pytest.mark.torch
@pytest.mark.parametrize("name", list(TIMM_COUNTS), ids=list(TIMM_COUNTS))
def test_param_count_matches_timm(name):
    ref = sum(p.numel() for p in _timm_model(name).parameters())
    assert ref == TIMM_COUNTS[name]
    assert count_params(abstract_variables(name)) == ref
    assert models.get_spec(name).param_count == ref
    assert models.get_spec(name).reference == f"timm:legacy_{name}"


@pytest.mark.torch
@pytest.mark.parametrize("name,resolution", PARITY_CASES)
def test_timm_parity(name, resolution):
    torch_model = randomize_batch_norm(_timm_model(name))
    assert torch_parity(name, torch_model, resolution) < 1e-4


def test_reduction_ratio_sets_squeeze_width():
    variables = abstract_variables("seresnet50", reduction=8, width_mult=0.25, depth_mult=0.01)
    fc1 = variables["params"]["stage1_block0"]["se"]["fc1"]["kernel"]
    assert fc1.shape == (1, 1, 64, 8)  # 4 · 16 planes / 8


DROP_PATH_CASES = [
    pytest.param("seresnet50", 4, id="seresnet50"),
    pytest.param("senet154", 4, id="senet154"),
]


@pytest.mark.parametrize("name,blocks", DROP_PATH_CASES)
def test_drop_path_linear_and_identity_in_eval(name, blocks):
    check_drop_path(name, dict(width_mult=0.25, depth_mult=0.01), blocks)


def test_senet154_layout():
    p = jax.tree.map(lambda a: a.shape, abstract_variables("senet154")["params"])
    assert [p[f"stem{i}"]["conv"]["kernel"] for i in (1, 2, 3)] == [
        (3, 3, 3, 64),
        (3, 3, 64, 64),
        (3, 3, 64, 128),
    ]
    assert p["stage2_block0"]["downsample"]["conv"]["kernel"] == (3, 3, 256, 512)
    assert p["stage1_block0"]["downsample"]["conv"]["kernel"] == (1, 1, 128, 256)
    assert p["stage1_block0"]["conv2"]["conv"]["kernel"] == (3, 3, 2, 256)  # 64 groups
