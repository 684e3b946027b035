"""Reference weights converted with what they need: the reference's own input normalisation
(including re-normalisation inside forward) and no aux heads required (issue 16, items 1-2)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnx import convert, models

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")

from tests.convert.pretrained_like import (  # noqa: E402
    normalise,
    pretrained_like,
    raw_images,
    rel_error,
    torch_logits,
)

pytestmark = pytest.mark.torch
RES = 32  # GoogLeNet takes 15 px and up


@functools.cache
def _apply(name):
    model = models.create(name)
    return jax.jit(lambda v, x: model.apply(v, x, train=False))


def _cnnx_logits(name, variables, pixels, mean, std):
    return np.asarray(_apply(name)(variables, jnp.asarray(normalise(pixels, mean, std))))


@pytest.mark.slow  # ~25 s: two torch builds, a conversion and one compile
def test_pretrained_googlenet_converts_as_is_and_matches_on_raw_pixels(monkeypatch):
    net = pretrained_like("googlenet", monkeypatch, RES)
    assert net.transform_input and net.aux1 is None  # what weights=IMAGENET1K_V1 builds
    sd = net.state_dict()
    assert not [k for k in sd if k.startswith(("aux1.", "aux2."))]
    variables, report = convert.from_torch("googlenet", sd, resolution=RES, return_report=True)
    assert report.absent == ("aux1", "aux2")
    assert report.skipped == () and report.counters == 57
    assert {"aux1", "aux2"} <= set(variables["params"])  # fresh, so the model still trains
    mean, std, _ = convert.input_normalization("googlenet")
    assert mean == std == (0.5, 0.5, 0.5)
    pixels = raw_images(4, RES)
    ref = torch_logits(net, pixels)
    assert rel_error(_cnnx_logits("googlenet", variables, pixels, mean, std), ref) < 1e-4
    # ImageNet mean/std (what was written before) gives other logits on the same image.
    imagenet = convert.input_normalization("googlenet", transform_input=False)[:2]
    assert rel_error(_cnnx_logits("googlenet", variables, pixels, *imagenet), ref) > 0.1


@pytest.mark.slow
def test_googlenet_made_without_transform_input(monkeypatch):
    net = pretrained_like("googlenet", monkeypatch, RES, transform_input=False)
    variables = convert.from_torch("googlenet", net.state_dict(), resolution=RES)
    mean, std, why = convert.input_normalization("googlenet", transform_input=False)
    assert "transform_input=False" in why
    pixels = raw_images(2, RES, seed=1)
    assert (
        rel_error(
            _cnnx_logits("googlenet", variables, pixels, mean, std), torch_logits(net, pixels)
        )
        < 1e-4
    )


def test_transform_input_flag_only_where_the_reference_has_it():
    with pytest.raises(convert.ConversionError, match="no transform_input"):
        convert.input_normalization("resnet18", transform_input=True)


def test_partial_aux_head_is_still_a_mismatch():
    torch.manual_seed(0)
    sd = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    sd = {k: v for k, v in sd.state_dict().items() if not k.startswith("aux2.fc2")}
    with pytest.raises(convert.ConversionError, match="aux2/fc2"):
        convert.from_torch("googlenet", sd, resolution=RES)


def _references():
    return [
        (n, models.get_spec(n).reference)
        for n in models.list_models()
        if models.get_spec(n).reference.startswith(("timm:", "torchvision:"))
    ]


@pytest.mark.parametrize("name,reference", _references())
def test_spec_normalisation_is_the_references(name, reference, monkeypatch):
    """Every reference's expected input: timm's pretrained_cfg, torchvision's weights
    transforms, and the re-normalisation a pretrained builder switches on in forward()."""
    spec = models.get_spec(name)
    lib, arch = reference.split(":", 1)
    if lib == "timm":
        cfg = timm.models.get_pretrained_cfg(arch)
        assert (spec.mean, spec.std) == (tuple(cfg.mean), tuple(cfg.std))
        return
    from torchvision.models import get_model_weights

    transforms = next(iter(get_model_weights(arch))).transforms()
    expected = (tuple(transforms.mean), tuple(transforms.std))
    with torch.device("meta"):
        bare = torchvision.models.get_model(arch, weights=None)
    if hasattr(bare, "transform_input"):
        net = pretrained_like(arch, monkeypatch, None)
        assert net.transform_input
        expected = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert spec.mean + spec.std == pytest.approx(expected[0] + expected[1])
