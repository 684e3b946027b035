"""MobileNet v1 (timm layout), v2 and v3 (torchvision layouts): counts, parity, mult-adds."""

import pytest

from cnnx import models
from cnnx.models.mobilenet import V1_STAGES
from cnnx.models.scaling import round_filters
from tests.models.helpers import abstract_variables, count_params, torch_parity

try:  # Imported at collection: torchvision imported after tensorflow (conftest) segfaults.
    import timm
    import torchvision
except ImportError:
    timm = torchvision = None


def _timm_v1(alpha):
    if alpha == 1.0:
        return timm.create_model("mobilenetv1_100", pretrained=False)
    # timm registers only α=1.0 (and 1.25); its generator builds the thinner ones.
    from timm.models.efficientnet import _gen_mobilenet_v1

    return _gen_mobilenet_v1("mobilenetv1_100", alpha)


def _tv(name):
    return lambda: getattr(torchvision.models, name)()


# name: (torch model factory, exact parameter count)
REFERENCES = {
    "mobilenetv1_100": (lambda: _timm_v1(1.0), 4_231_976),
    "mobilenetv1_075": (lambda: _timm_v1(0.75), 2_585_560),
    "mobilenetv1_050": (lambda: _timm_v1(0.5), 1_331_592),
    "mobilenetv1_025": (lambda: _timm_v1(0.25), 470_072),
    "mobilenet_v2": (_tv("mobilenet_v2"), 3_504_872),
    "mobilenet_v3_large": (_tv("mobilenet_v3_large"), 5_483_032),
    "mobilenet_v3_small": (_tv("mobilenet_v3_small"), 2_542_856),
}
# name: resolution
PARITY = {
    "mobilenetv1_100": 64,
    "mobilenet_v2": 64,
    "mobilenet_v3_large": 32,
    "mobilenet_v3_small": 32,
}
# Howard et al. 2017, Tables 6 and 8: α -> published mult-adds (millions) at 224.
V1_MULT_ADDS = {1.0: 569, 0.75: 325, 0.5: 149, 0.25: 41}


def randomize_batch_norm(torch_model, seed: int = 0):
    """Random BN statistics and affine parameters, so parity also checks their conversion."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in torch_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # timm's BatchNormAct2d included
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return torch_model


# The registered references' counts are checked registry-wide (test_registry_wide.py); timm
# registers no thinner MobileNet v1, so the counts of its generator's are checked here.
THINNER_V1 = [n for n in REFERENCES if not models.get_spec(n).reference]


@pytest.mark.torch
@pytest.mark.parametrize("name", THINNER_V1, ids=THINNER_V1)
def test_thinner_v1_counts_match_timms_generator(name):
    if timm is None:
        pytest.skip("needs timm and torchvision")
    factory, expected = REFERENCES[name]
    torch_count = sum(p.numel() for p in factory().parameters())
    assert torch_count == expected
    assert count_params(abstract_variables(name)) == expected
    assert models.get_spec(name).param_count == expected


@pytest.mark.torch
@pytest.mark.parametrize("name", list(PARITY), ids=list(PARITY))
def test_torch_parity(name):
    if timm is None:
        pytest.skip("needs timm and torchvision")
    factory, _ = REFERENCES[name]
    err = torch_parity(name, randomize_batch_norm(factory()), PARITY[name])
    assert err < 1e-4


def _v1_mult_adds(alpha: float, resolution: int = 224, num_classes: int = 1000) -> int:
    """Mult-adds of MobileNet v1 counted from the layer table (convolutions + classifier)."""
    h = resolution // 2
    c = round_filters(32, alpha)
    total = h * h * 3 * 9 * c
    for channels, units, stride in V1_STAGES:
        f = round_filters(channels, alpha)
        for j in range(units):
            if j == 0 and stride == 2:
                h //= 2
            total += h * h * 9 * c + h * h * c * f  # depthwise + pointwise
            c = f
    return total + c * num_classes


@pytest.mark.parametrize("alpha", list(V1_MULT_ADDS), ids=[str(a) for a in V1_MULT_ADDS])
def test_v1_mult_adds_match_paper(alpha):
    assert _v1_mult_adds(alpha) / 1e6 == pytest.approx(V1_MULT_ADDS[alpha], abs=1.0)


def test_v1_resolution_multiplier_is_the_input_size():
    # ρ = 160/224: same parameters, a 5×5 final map instead of 7×7 (fully convolutional).
    assert count_params(abstract_variables("mobilenetv1_100", resolution=160)) == 4_231_976
    assert _v1_mult_adds(1.0, 160) / 1e6 == pytest.approx(290, abs=1.0)  # paper Table 7: 290M
