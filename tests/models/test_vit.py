"""Vision Transformer: counts, parity with torchvision and timm, position-embedding resizing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnx import models
from cnnx.models.vit import resample_pos_embed, resize_pos_embed
from tests.models.helpers import abstract_variables, count_params, torch_parity

try:  # Imported at collection: torchvision imported after tensorflow (conftest) segfaults.
    import timm
    import torch
    import torchvision
except ImportError:
    timm = torch = torchvision = None

needs_torch = pytest.mark.skipif(torchvision is None or timm is None, reason="needs torch, timm")


def _reference(source: str, ctor: str, **kwargs):
    if source == "timm":
        return timm.create_model(ctor, pretrained=False, **kwargs)
    return getattr(torchvision.models, ctor)(**kwargs)


def _random_head(model):
    """torchvision zero-initialises the head, which would make parity vacuous."""
    torch.manual_seed(0)
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    return model


@pytest.mark.torch
@needs_torch
def test_parity_torchvision_vit_b_16_small_image():
    """torchvision's ViT only runs at its own image_size; build both at 32 (2×2 patches)."""
    ref = torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072
    )
    assert torch_parity("vit_b_16", _random_head(ref), 32, image_size=32) < 1e-4


@pytest.mark.torch
@needs_torch
def test_parity_torchvision_vit_b_16_224():
    ref = _random_head(_reference("torchvision", "vit_b_16"))
    assert torch_parity("vit_b_16", ref, 224) < 1e-4


@pytest.mark.torch
@needs_torch
def test_parity_timm_vit_tiny():
    ref = _reference("timm", "vit_tiny_patch16_224")
    assert torch_parity("vit_ti_16", ref, 224) < 1e-4


def test_width_mult_keeps_64_wide_heads():
    """vit_b_16 at width 0.25 is vit_ti_16 (3 heads of 64)."""
    n = count_params(abstract_variables("vit_b_16", width_mult=0.25))
    assert n == models.get_spec("vit_ti_16").param_count


def test_pos_embed_created_at_image_size_and_resized_at_call():
    params = abstract_variables("vit_ti_16", resolution=32)["params"]
    assert params["pos_embed"].shape == (1, 1 + 14 * 14, 192)
    model = models.create("vit_ti_16", num_classes=5, depth_mult=0.1)
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 48, 48, 3))
    variables = jax.jit(lambda: model.init(jax.random.PRNGKey(1), x, train=False))()
    # Running at 48 (3×3 grid) equals resizing the parameters once and building for 48.
    resized = {"params": resize_pos_embed(variables["params"], 3)}
    assert resized["params"]["pos_embed"].shape == (1, 10, 192)
    small = models.create("vit_ti_16", num_classes=5, depth_mult=0.1, image_size=48)
    out = jax.jit(lambda v: model.apply(v, x, train=False))(variables)
    expected = jax.jit(lambda v: small.apply(v, x, train=False))(resized)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_resample_keeps_class_token_and_constant_fields():
    pos = jnp.concatenate([jnp.full((1, 1, 4), 7.0), jnp.full((1, 16, 4), 2.0)], axis=1)
    out = resample_pos_embed(pos, (6, 5))
    assert out.shape == (1, 31, 4)
    np.testing.assert_allclose(out[0, 0], 7.0)
    np.testing.assert_allclose(out[0, 1:], 2.0, rtol=1e-6)
    assert resample_pos_embed(pos, 4) is pos
