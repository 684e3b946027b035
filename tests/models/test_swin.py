"""Swin Transformer: counts and numeric parity with torchvision (v1)."""

import numpy as np
import pytest

from cnnx import models
from cnnx.models.swin import relative_position_index
from tests.models.helpers import abstract_variables, count_params, torch_parity

try:  # Imported at collection: torchvision imported after tensorflow (conftest) segfaults.
    import timm
    import torch
    import torchvision
except ImportError:
    timm = torch = torchvision = None

needs_torch = pytest.mark.skipif(torchvision is None or timm is None, reason="needs torch, timm")

COUNT_CASES = ["swin_t", "swin_s", "swin_b"]


@pytest.mark.torch
@needs_torch
@pytest.mark.parametrize("name", COUNT_CASES, ids=COUNT_CASES)
def test_param_count_matches_torchvision(name):
    with torch.device("meta"):  # shapes only: no memory, no init
        ref = getattr(torchvision.models, name)()
    expected = sum(p.numel() for p in ref.parameters())
    assert count_params(abstract_variables(name)) == expected
    assert models.get_spec(name).param_count == expected


@pytest.mark.torch
@needs_torch
@pytest.mark.slow
def test_parity_torchvision_swin_t_shallow():
    """swin_t's stages at two blocks each (cheap), at 64: stages 1 and 2 pad 16 -> 21 and
    8 -> 14 and use shifted windows with masks; 3 and 4 are single padded windows."""
    ref = torchvision.models.SwinTransformer(
        patch_size=[4, 4],
        embed_dim=96,
        depths=[2, 2, 2, 2],
        num_heads=[3, 6, 12, 24],
        window_size=[7, 7],
    )
    assert torch_parity("swin_t", ref, 64, depths=(2, 2, 2, 2)) < 1e-4


@pytest.mark.torch
@needs_torch
@pytest.mark.slow
def test_parity_torchvision_swin_t_224():
    assert torch_parity("swin_t", torchvision.models.swin_t(), 224) < 1e-4


@pytest.mark.torch
@needs_torch
def test_relative_position_index_matches_torchvision():
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    attn = ShiftedWindowAttention(96, [7, 7], [0, 0], 3)
    expected = attn.relative_position_index.numpy().reshape(49, 49)
    np.testing.assert_array_equal(relative_position_index(7), expected)


def test_depth_mult_keeps_block_pairs():
    params = abstract_variables("swin_s", width_mult=0.25, depth_mult=0.01)["params"]
    for stage in range(1, 5):
        assert f"stage{stage}_block1" in params and f"stage{stage}_block2" not in params
    # C = 96 · 0.25 rounded up to one 32-wide head.
    assert params["patch_embed"]["kernel"].shape == (4, 4, 3, 32)
