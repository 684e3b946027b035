"""EfficientNet B0–B7 (torchvision and timm tf_* layouts), the scaling table and the compound
builder."""

import jax
import jax.numpy as jnp
import pytest

from cnnx import models
from cnnx.models.efficientnet import HEAD_WIDTH, SCALING, STAGES, STEM_WIDTH, efficientnet
from cnnx.models.scaling import round_filters, round_repeats
from tests.models.helpers import abstract_variables, count_params, torch_parity

try:  # Imported at collection: torchvision imported after tensorflow (conftest) segfaults.
    import timm
    import torchvision
except ImportError:
    timm = torchvision = None

# Exact parameter counts (torchvision 0.29 documents these; timm's tf_* ports are identical).
COUNTS = {
    "b0": 5_288_548,
    "b1": 7_794_184,
    "b2": 9_109_994,
    "b3": 12_233_232,
    "b4": 19_341_616,
    "b5": 30_389_784,
    "b6": 43_040_704,
    "b7": 66_347_960,
}
# Published stem and head widths of B0…B7 (official efficientnet_builder / timm).
STEM_WIDTHS = dict(zip(SCALING, (32, 32, 32, 40, 48, 48, 56, 64)))
HEAD_WIDTHS = dict(zip(SCALING, (1280, 1280, 1408, 1536, 1792, 2048, 2304, 2560)))
# Total MBConv blocks of B0…B7 (torchvision's features, timm's blocks).
BLOCKS = dict(zip(SCALING, (16, 23, 23, 26, 32, 39, 45, 55)))

# (cnnx name, resolution, marks): torchvision and timm (TF SAME padding; an odd size makes SAME
# pad asymmetrically at every stride) for B0; B5 covers torchvision's eps=1e-3 builders.
PARITY = [
    ("efficientnet_b0", 64, ()),
    ("tf_efficientnet_b0", 65, ()),
    ("efficientnet_b5", 32, (pytest.mark.slow,)),
]


def _reference(name: str):
    if name.startswith("tf_"):
        return timm.create_model(name, pretrained=False)
    return getattr(torchvision.models, name)()


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


def test_scaling_table_gives_published_widths_and_depths():
    for suffix, (width, depth, _, _) in SCALING.items():
        assert round_filters(STEM_WIDTH, width) == STEM_WIDTHS[suffix], suffix
        assert round_filters(HEAD_WIDTH, width) == HEAD_WIDTHS[suffix], suffix
        assert sum(round_repeats(r, depth) for *_, r in STAGES) == BLOCKS[suffix], suffix


@pytest.mark.torch
@pytest.mark.parametrize("suffix", list(COUNTS), ids=list(COUNTS))
def test_param_counts_match_references(suffix):
    if timm is None:
        pytest.skip("needs timm and torchvision")
    for name in (f"efficientnet_{suffix}", f"tf_efficientnet_{suffix}"):
        assert sum(p.numel() for p in _reference(name).parameters()) == COUNTS[suffix], name
        assert models.get_spec(name).param_count == COUNTS[suffix], name
    # Padding and epsilon do not change shapes, so one eval_shape covers both layouts (the
    # registry-wide test traces every registered model against its spec as well).
    assert count_params(abstract_variables(f"efficientnet_{suffix}")) == COUNTS[suffix]


@pytest.mark.torch
@pytest.mark.parametrize(
    "name,resolution",
    [pytest.param(n, r, marks=m, id=n) for n, r, m in PARITY],
)
def test_torch_parity(name, resolution):
    if timm is None:
        pytest.skip("needs timm and torchvision")
    err = torch_parity(name, randomize_batch_norm(_reference(name)), resolution)
    assert err < 1e-4


def test_tf_variant_differs_only_in_padding_and_epsilon():
    tv, tf = models.get_spec("efficientnet_b3"), models.get_spec("tf_efficientnet_b3")
    assert dict(tf.kwargs) == dict(tv.kwargs) | dict(padding="same", bn_epsilon=1e-3)
    assert models.get_spec("efficientnet_b6").kwargs["bn_momentum"] == 0.99  # torch 0.01


def test_compound_builder_phi0_is_b0():
    module, resolution = efficientnet(0)
    assert resolution == 224
    assert (module.width_mult, module.depth_mult) == (1.0, 1.0)
    b0 = models.create("efficientnet_b0")
    assert count_params(_abstract(module, 32)) == count_params(_abstract(b0, 32))


def _abstract(module, r):
    return jax.eval_shape(
        lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, r, r, 3)), train=False)
    )


def _flops(module, r: int) -> float:
    x = jax.ShapeDtypeStruct((1, r, r, 3), jnp.float32)
    v = _abstract(module, r)
    fn = jax.jit(lambda v, x: module.apply(v, x, train=False))
    cost = fn.lower(v, x).compile().cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]


@pytest.mark.slow
def test_compound_builder_phi1_about_doubles_flops():
    module, resolution = efficientnet(1)
    assert resolution == 258  # 224 · 1.15
    assert module.width_mult == pytest.approx(1.1) and module.depth_mult == pytest.approx(1.2)
    ratio = _flops(module, resolution) / _flops(models.create("efficientnet_b0"), 224)
    # α·β²·γ² = 1.93 on paper. With ceil rounding of block counts (as the published B1–B7)
    # the 1-block stages double and the ratio was 2.55; the builder rounds to nearest instead.
    assert 2.0 * 0.85 <= ratio <= 2.0 * 1.15, ratio
    ceil = efficientnet(1, depth_rounding="ceil")
    assert _flops(ceil.module, resolution) > _flops(module, resolution)
