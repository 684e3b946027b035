"""Depth by convention and receptive fields."""

import flax.linen as nn
import pytest

from cnnx import models
from cnnx.analysis import receptive_field as rfm
from cnnx.analysis.depth import depth, depth_of
from cnnx.analysis.trace import GLOBAL, RF, attach_params, trace, trace_registered

# name: (depth, depth counting pooling layers)
DEPTHS = {
    "resnet18": (18, 20),
    "resnet50": (50, 52),  # projection shortcuts sit beside the bottlenecks: not counted
    "alexnet": (8, 11),
    "vgg16": (16, 21),
    "seresnet50": (50, 52),  # squeeze-excite gates are beside the main path
    "googlenet": (22, 27),  # the paper's "22 layers deep (27 with pooling)"
}


@pytest.mark.parametrize("name", list(DEPTHS))
def test_depth(name):
    if name not in models.list_models():
        pytest.skip(f"{name} is not registered yet")
    # At the spec resolution (224 for VGG-16) the adaptive 7×7 average pool is an identity;
    # at other resolutions it is a pooling layer and the pooled depth grows by one.
    tr = trace_registered(name)
    assert (depth_of(tr), depth_of(tr, count_pooling=True)) == DEPTHS[name]


def test_depth_function():
    assert depth("lenet5") == 5 and depth("lenet5", count_pooling=True) == 7


def test_three_stacked_3x3_give_7x7():
    assert rfm.stack([(3, 1, 1)] * 3) == RF(7, 1, 0.0)

    class Three(nn.Module):
        @nn.compact
        def __call__(self, x, *, train: bool):
            for i in range(3):
                x = nn.relu(nn.Conv(4, (3, 3), name=f"c{i}")(x))
            return x

    fields = rfm.layer_fields(trace(Three(), (1, 16, 16, 3)))
    assert [f[2].size for f in fields] == [3, 5, 7]


def test_vgg16_fields():
    """By hand: five blocks of 3×3 convs (2, 2, 3, 3, 3) each followed by a 2×2/2 pool.

    Block 1: 3, 5, pool 6 (jump 2); block 2: 10, 14, pool 16 (jump 4); block 3: 24, 32, 40,
    pool 44 (jump 8); block 4: 60, 76, 92, pool 100 (jump 16); block 5: 132, 164, 196 (conv5_3),
    pool5 212 (jump 32).
    """
    expected = [3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100, 132, 164, 196, 212]
    assert rfm.stack([(3, 1, 1)] * 2 + [(2, 2, 0)]).size == 6
    if "vgg16" not in models.list_models():
        pytest.skip("vgg16 is not registered yet")
    fields = rfm.receptive_fields("vgg16", 224)
    spatial = [f for _, _, f in fields if isinstance(f, RF)]
    assert [f.size for f in spatial[:18]] == expected
    assert spatial[17].jump == 32


def test_resnet_main_path_and_global_head():
    tr = trace(models.create("resnet18"), (1, 64, 64, 3))
    attach_params(tr.layers, tr.params)
    by_name = {layer.name: layer.rf for layer in tr.layers}
    assert by_name["stem/conv"] == RF(7, 2, 0.0)
    assert by_name["maxpool1"] == RF(11, 4, 0.0)
    # The shortcut (1×1) never widens the field; the residual branch decides.
    assert by_name["stage2_block0/conv2/conv"].size == by_name["stage2_block0/conv1/conv"].size + 16
    assert by_name["head/gpool1"] == GLOBAL
