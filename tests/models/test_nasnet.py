"""NASNet-A: parameter counts and numeric parity with timm's nasnetalarge."""

import pytest

from cnnx import models
from tests.models.helpers import abstract_variables, count_params, torch_parity

try:  # Imported at collection: torchvision imported after tensorflow (conftest) segfaults.
    import timm
    import torch
    from timm.models.nasnet import NASNetALarge
except ImportError:
    timm = torch = NASNetALarge = None

needs_timm = pytest.mark.skipif(timm is None, reason="needs torch and timm")

# name: exact parameter count (nasnetamobile: no reference; derived from the same layout).
COUNTS = {"nasnetalarge": 88_753_150, "nasnetamobile": 5_289_978}


@pytest.mark.parametrize("name", list(COUNTS), ids=list(COUNTS))
def test_param_count(name):
    assert count_params(abstract_variables(name)) == COUNTS[name]
    assert models.get_spec(name).param_count == COUNTS[name]


@pytest.mark.torch
@needs_timm
def test_param_count_matches_timm_nasnetalarge():
    with torch.device("meta"):  # shapes only
        ref = timm.create_model("nasnetalarge", pretrained=False)
    assert sum(p.numel() for p in ref.parameters()) == COUNTS["nasnetalarge"]


@pytest.mark.torch
@needs_timm
@pytest.mark.slow
def test_parity_timm_nasnetalarge():
    """At 32 (the smallest input that reaches 1×1): every stride-2 'SAME' case (odd 15 -> 8 and
    even sizes) is exercised."""
    torch.manual_seed(0)
    ref = timm.create_model("nasnetalarge", pretrained=False)
    assert torch_parity("nasnetalarge", ref, 32) < 1e-4


@pytest.mark.torch
@needs_timm
@pytest.mark.slow
def test_parity_mobile_width_with_timm_cells():
    """timm's class fixes N = 6; at the mobile widths (stem 32, P = 1056) it checks the
    channel bookkeeping of nasnetamobile's cells (cnnx with num_cells=6)."""
    torch.manual_seed(0)
    ref = NASNetALarge(stem_size=32, num_features=1056)
    assert torch_parity("nasnetamobile", ref, 32, num_cells=6) < 1e-4
