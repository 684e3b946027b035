"""Every analysis describes inference: training-only heads add nothing, and weights that are
zero by construction count by their real connections (issue 16, item 10)."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from cnnx.analysis import summary
from cnnx.analysis.flops import count_macs
from cnnx.analysis.memory import activation_bytes
from cnnx.analysis.trace import trace, trace_registered
from cnnx.models.lenet import C3_CONNECTIONS

# Auxiliary-head parameters: torchvision's counts with minus without aux_logits.
AUX_PARAMS = {"googlenet": 13_004_888 - 6_624_904, "inception_v3": 27_161_264 - 23_834_568}


@pytest.mark.parametrize(
    "name,resolution,gmacs",
    # torchvision's published _ops for these weights, which have no aux heads at inference.
    [("googlenet", 224, 1.498), ("inception_v3", 299, 5.713)],
)
def test_aux_heads_add_nothing_to_inference(name, resolution, gmacs):
    with_aux = trace_registered(name, resolution)
    without = trace_registered(name, resolution, aux_logits=False)
    macs = sum(layer.macs for layer in with_aux.layers)
    assert macs == sum(layer.macs for layer in without.layers)
    assert round(macs / 1e9, 3) == gmacs
    assert not [layer.name for layer in with_aux.layers if "aux" in layer.name.lower()]
    assert [layer.kind for layer in with_aux.layers] == [layer.kind for layer in without.layers]
    assert activation_bytes(with_aux) == activation_bytes(without)
    assert (with_aux.depth, with_aux.depth_pool) == (without.depth, without.depth_pool)
    # The heads' parameters still exist (they train) and are named as training-only.
    assert with_aux.training_only_params == AUX_PARAMS[name]
    assert without.training_only_params == 0


def test_summary_names_training_only_parameters():
    s = summary.summarize("googlenet", 64)
    assert not [layer for layer in s.layers if layer.name.startswith("aux")]
    assert s.totals()["training_only_parameters"] == AUX_PARAMS["googlenet"]
    assert "6,379,984 in layers that run in training only" in summary.to_text(s)


def test_lenet_c3_counts_its_real_connections():
    # Table I: 60 of the 96 map pairs, each a 5×5 kernel over a 10×10 output.
    taps = sum(len(c) for c in C3_CONNECTIONS) * 5 * 5
    rows = {layer.name: layer for layer in summary.summarize("lenet5").layers}
    assert rows["c3"].macs == taps * 10 * 10 == 150_000
    full = {layer.name: layer for layer in summary.summarize("lenet5_full").layers}
    assert full["c3"].macs == 6 * 16 * 25 * 100 == 240_000
    assert count_macs("lenet5_full") - count_macs("lenet5") == 90_000


class _MaskedConv(nn.Module):
    """A conv whose kernel is multiplied by a constant 0/1 mask (a pruned layer)."""

    mask: np.ndarray

    @nn.compact
    def __call__(self, x, *, train: bool):
        k = self.param("kernel", nn.initializers.lecun_normal(), self.mask.shape)
        y = jax.lax.conv_general_dilated(
            x, k * self.mask, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return nn.Dense(3, name="fc")(y.reshape(y.shape[0], -1))


def test_constant_mask_scales_macs():
    mask = np.zeros((3, 3, 4, 8), np.float32)
    mask[1, 1] = 1.0  # only the centre tap: a 1×1 conv in a 3×3 kernel
    tr = trace(_MaskedConv(mask), (2, 6, 6, 4))
    conv = tr.layers[0]
    assert conv.kind == "conv"
    assert conv.macs == 2 * 4 * 4 * 8 * 4  # batch × output pixels × filters × real taps
    dense = np.ones_like(mask)
    assert trace(_MaskedConv(dense), (2, 6, 6, 4)).layers[0].macs == conv.macs * 9
    assert tr.layers[1].macs == 2 * 4 * 4 * 8 * 3  # the dense layer is unaffected


def test_trace_reads_inference_not_init():
    """A branch that runs only in training (init still creates its parameters) adds no row."""

    class TrainOnlyBranch(nn.Module):
        @nn.compact
        def __call__(self, x, *, train: bool):
            side = nn.Dense(5, name="side")
            if train or self.is_initializing():
                x = x + side(x).sum()
            return nn.Dense(2, name="out")(x)

    tr = trace(TrainOnlyBranch(), (1, 4))
    assert [layer.kind for layer in tr.layers] == ["fc"]
    assert tr.training_only_params == 4 * 5 + 5
    assert tr.params["side"]["kernel"].shape == (4, 5)
