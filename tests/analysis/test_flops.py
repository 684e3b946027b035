"""MACs against torchvision's published `_ops` (GMACs, read offline from the weights enums)."""

import pytest

from cnnx import models
from cnnx.analysis.flops import count_macs, torchvision_reference

pytest.importorskip("torchvision")
pytestmark = pytest.mark.torch

KEY_MODELS = ["vgg16", "mobilenet_v2", "efficientnet_b0", "alexnet"]


def _check(name):
    if name not in models.list_models():
        pytest.skip(f"{name} is not registered yet")
    ref = torchvision_reference(name)
    if ref is None:
        pytest.skip(f"{name}: no torchvision weights enum with _ops")
    gmacs, resolution = ref
    ours = count_macs(name, resolution) / 1e9
    assert ours == pytest.approx(gmacs, rel=0.02), (name, ours, gmacs)


@pytest.mark.parametrize("name", KEY_MODELS)
def test_key_models_match_torchvision(name):
    _check(name)


def test_resnet50_exact():
    assert torchvision_reference("resnet50") == (4.089, 224)
    assert count_macs("resnet50") == 4_089_184_256  # 4.0892 G: +0.005% of torchvision's
    assert torchvision_reference("lenet5") is None


def _torchvision_models():
    return [
        n
        for n in models.list_models()
        if models.get_spec(n).reference.startswith("torchvision:")
        and n not in [*KEY_MODELS, "resnet50"]
    ]


# ~45 models at ~1-5 s of tracing each on 2 cores: slow in total, still run in CI.
@pytest.mark.slow
@pytest.mark.parametrize("name", _torchvision_models())
def test_every_torchvision_model(name):
    _check(name)
