"""Inception v3 (torchvision), Inception-v4 and Inception-ResNet-v2 (timm): exact counts,
parity at the smallest accepted resolution (75 px), auxiliary head in train vs eval mode."""

import jax
import pytest

from cnnx import models
from tests.models.helpers import abstract_variables, count_params, torch_parity

try:  # Imported at collection: torchvision imported after tensorflow (conftest) segfaults.
    import timm
    import torch
    import torchvision
except ImportError:
    timm = torch = torchvision = None

# (name, overrides): exact parameter count of the reference built with the same options. The
# registered variants' counts are checked registry-wide (test_registry_wide.py).
COUNTS = [
    pytest.param("inception_v3", {"aux_logits": False}, 23_834_568, id="inception_v3-noaux"),
]


def _reference(name, **kwargs):
    if name == "inception_v3":
        return torchvision.models.inception_v3(weights=None, init_weights=False, **kwargs)
    return timm.create_model(name, pretrained=False)


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
@pytest.mark.parametrize("name,overrides,count", COUNTS)
def test_param_count_matches_reference(name, overrides, count):
    if timm is None:
        pytest.skip("needs torchvision and timm")
    with torch.device("meta"):
        ref = _reference(name, **overrides)
    assert sum(p.numel() for p in ref.parameters()) == count
    assert count_params(abstract_variables(name, **overrides)) == count
    if not overrides:
        assert models.get_spec(name).param_count == count


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("name", ["inception_v3", "inception_v4", "inception_resnet_v2"])
def test_parity_at_75px(name):
    if timm is None:
        pytest.skip("needs torchvision and timm")
    torch.manual_seed(0)
    assert torch_parity(name, _randomize_bn(_reference(name)), 75) < 1e-4


@pytest.mark.parametrize("resolution", [75, 299], ids=["75px-fallback", "299px-torchvision"])
def test_inception_v3_aux_train_only(resolution):
    # At 299 px the aux head runs as torchvision's (5/3 average pool on the 17×17 map); at 75 px
    # torchvision cannot run it, cnnx pools adaptively to 5×5 (see the module docstring).
    model = models.create("inception_v3", num_classes=3, width_mult=0.25, depth_mult=0.01)
    x = jax.random.normal(jax.random.PRNGKey(0), (1, resolution, resolution, 3))
    variables = jax.jit(lambda: model.init(jax.random.PRNGKey(0), x, train=False))()
    assert "AuxLogits" in variables["params"]
    (logits, aux), _ = jax.jit(
        lambda v: model.apply(
            v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.PRNGKey(1)}
        )
    )(variables)
    assert logits.shape == (1, 3) and len(aux) == 1 and aux[0].shape == (1, 3)
    assert model.apply(variables, x, train=False).shape == (1, 3)


def test_depth_mult_module_counts():
    v3 = abstract_variables("inception_v3", depth_mult=0.01, width_mult=0.25)["params"]
    assert sorted(k for k in v3 if k.startswith("Mixed")) == [
        "Mixed_5b",
        "Mixed_6a",
        "Mixed_6b",
        "Mixed_7a",
        "Mixed_7b",
    ]
    irv2 = abstract_variables("inception_resnet_v2", depth_mult=0.2, width_mult=0.25)["params"]
    assert sum(k.startswith("block35_") for k in irv2) == 2
    assert sum(k.startswith("block17_") for k in irv2) == 4
    assert sum(k.startswith("block8_") for k in irv2) == 2 + 1  # + block8_final
    v4 = abstract_variables("inception_v4", depth_mult=2.0, width_mult=0.25)["params"]
    assert sum(k.startswith("inception_b_") for k in v4) == 14
