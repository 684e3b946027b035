"""ConvNeXt: exact parameter counts and numeric parity with torchvision (and timm's layout)."""

import numpy as np
import pytest

from tests.models.helpers import abstract_variables, torch_parity

try:  # Imported at collection: torchvision imported after tensorflow (conftest) segfaults.
    import timm
    import torch
    import torchvision
except ImportError:
    timm = torch = torchvision = None

needs_torch = pytest.mark.skipif(torchvision is None or timm is None, reason="needs torch, timm")


def _reference(source: str, ctor: str):
    """The reference model (random weights)."""
    if source == "timm":
        return timm.create_model(ctor, pretrained=False)
    return getattr(torchvision.models, ctor)()


def _randomise_layer_scale(model):
    """Layer scale starts at 1e-6, which would make every block (nearly) the identity and
    parity trivial; give it O(1) values so each block's branch counts."""
    torch.manual_seed(0)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith("layer_scale") or key.endswith("gamma"):
                p.uniform_(0.5, 1.5)
    return model


@pytest.mark.torch
@needs_torch
def test_parity_torchvision_convnext_tiny():
    ref = _randomise_layer_scale(_reference("torchvision", "convnext_tiny"))
    assert torch_parity("convnext_tiny", ref, 32) < 1e-4


@pytest.mark.torch
@needs_torch
def test_parity_timm_layout():
    """timm names (used by convnext_xlarge) convert too; checked on timm's convnext_tiny."""
    ref = _randomise_layer_scale(_reference("timm", "convnext_tiny"))
    assert torch_parity("convnext_tiny", ref, 32) < 1e-4


def test_scaled_variant_keeps_one_block_per_stage():
    variables = abstract_variables("convnext_base", width_mult=0.25, depth_mult=0.01)
    params = variables["params"]
    for stage in range(1, 5):
        assert f"stage{stage}_block0" in params and f"stage{stage}_block1" not in params
    # Channels 128·2^i scaled by 0.25.
    assert params["stage4_block0"]["pwconv2"]["kernel"].shape == (4 * 256, 256)
    np.testing.assert_equal(params["stage1_block0"]["layer_scale"].shape, (32,))
