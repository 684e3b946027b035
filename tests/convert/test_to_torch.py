"""cnnx variables -> torchvision / timm state_dicts (issue 31, item 1): one small model per
family with conversion rules, in each naming scheme the rules cover.

Each case checks both directions: a state_dict with every float tensor random goes
torch -> cnnx -> torch and comes back bit for bit (keys, order, dtypes, values), and cnnx
variables that torch never held (the converted ones, perturbed) go cnnx -> torch, load
strictly into the reference module and give cnnx's logits within the parity bound of the
conversion tests (relative error < 1e-4, tests/convert/pretrained_like.py)."""

import dataclasses
from collections.abc import Callable

import jax
import numpy as np
import pytest
from flax import traverse_util

from cnnx import convert, models

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")

from tests.convert.pretrained_like import normalise, raw_images, rel_error  # noqa: E402

pytestmark = pytest.mark.torch
CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Case:
    name: str  # cnnx model
    resolution: int
    build: Callable[[], "torch.nn.Module"] | None = None  # None: convert.reference_model
    overrides: tuple = ()  # cnnx model options, as (key, value) pairs

    def torch_module(self):
        torch.manual_seed(0)
        if self.build is None:
            return convert.reference_model(self.name, num_classes=CLASSES, **dict(self.overrides))
        return self.build().eval()


def _tv_vit_small():
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=2, num_heads=3, hidden_dim=192, mlp_dim=768,
        num_classes=CLASSES,
    )  # fmt: skip


def _tv_swin_shallow():
    return torchvision.models.SwinTransformer(
        patch_size=[4, 4], embed_dim=96, depths=[2, 2, 2, 2], num_heads=[3, 6, 12, 24],
        window_size=[7, 7], num_classes=CLASSES,
    )  # fmt: skip


def _timm_convnext_tiny():
    return timm.create_model("convnext_tiny", num_classes=CLASSES)


def _timm_nasnet_mobile_width():
    from timm.models.nasnet import NASNetALarge

    return NASNetALarge(stem_size=32, num_features=1056, num_classes=CLASSES)


_VIT_SMALL = (
    ("image_size", 32),
    ("num_layers", 2),
    ("num_heads", 3),
    ("hidden_dim", 192),
    ("mlp_dim", 768),
)
# (id, case, slow): one model per family with rules, in each naming scheme the rules cover;
# slow: over ~20 s here (big fully connected layers, deep graphs to compile).
CASES = [
    pytest.param(Case(name, res, build, options), id=case_id, marks=[pytest.mark.slow] * slow)
    for case_id, (name, res, build, options), slow in [
        ("alexnet", ("alexnet", 63, None, ()), True),
        ("convnext-torchvision", ("convnext_tiny", 32, None, ()), True),
        ("convnext-timm", ("convnext_tiny", 32, _timm_convnext_tiny, ()), True),
        ("densenet", ("densenet121", 64, None, ()), True),
        ("efficientnet", ("efficientnet_b0", 64, None, ()), False),
        ("tf_efficientnet", ("tf_efficientnet_b0", 65, None, ()), False),
        ("googlenet", ("googlenet", 32, None, ()), False),
        ("inception_v3", ("inception_v3", 75, None, ()), True),
        ("inception_v4", ("inception_v4", 75, None, ()), True),
        ("inception_resnet_v2", ("inception_resnet_v2", 75, None, ()), True),
        ("mobilenetv1", ("mobilenetv1_100", 64, None, ()), False),
        ("mobilenet_v2", ("mobilenet_v2", 64, None, ()), False),
        ("mobilenet_v3_large", ("mobilenet_v3_large", 32, None, ()), False),
        ("mobilenet_v3_small", ("mobilenet_v3_small", 32, None, ()), False),
        ("nasnet", ("nasnetamobile", 32, _timm_nasnet_mobile_width, (("num_cells", 6),)), True),
        ("resnet", ("resnet18", 64, None, ()), False),
        ("senet", ("seresnet50", 64, None, ()), True),
        ("swin", ("swin_t", 64, _tv_swin_shallow, (("depths", (2, 2, 2, 2)),)), True),
        ("vgg", ("vgg11_bn", 32, None, ()), True),
        ("vit-torchvision", ("vit_b_16", 32, _tv_vit_small, _VIT_SMALL), False),
        ("vit-timm", ("vit_ti_16", 32, None, (("image_size", 32),)), False),
    ]
]


def _random_state_dict(state_dict, seed: int = 0) -> dict:
    """Every float tensor changed by random noise at its own scale (variances kept positive),
    so each element's place is checked and the network stays numerically sane."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, t in state_dict.items():
        if t.is_floating_point():
            noise = torch.randn(t.shape, generator=g, dtype=t.dtype)
            if key.endswith("running_var"):
                t = 0.5 + noise.abs()
            else:
                t = t + 0.1 * noise * (t.abs().mean() + 0.02)
        out[key] = t
    return out


def _perturbed(variables, seed: int = 1):
    """Other values than torch's, at the scale of each tensor (zero-initialised heads and
    layer scales included), with valid BatchNorm statistics."""
    rng = np.random.default_rng(seed)
    out = {}
    for path, x in traverse_util.flatten_dict(variables).items():
        noise = rng.standard_normal(x.shape, dtype=np.float32)
        if path[-1] == "var":
            out[path] = 0.5 + np.abs(noise)
        elif path[-1] == "mean":
            out[path] = 0.1 * noise
        else:
            out[path] = x + 0.1 * noise * (np.abs(x).mean() + 0.02)
    return traverse_util.unflatten_dict(out)


@pytest.mark.parametrize("case", CASES)
def test_round_trip_and_logits(case):
    net = case.torch_module()
    # torch -> cnnx -> torch: identical.
    original = _random_state_dict(net.state_dict())
    options = {"num_classes": CLASSES, **dict(case.overrides)}
    variables = convert.from_torch(case.name, original, resolution=case.resolution, **options)
    back = convert.to_torch(case.name, variables, original)
    assert list(back) == list(original)
    for key, tensor in original.items():
        want = tensor.numpy()
        assert back[key].dtype == want.dtype and back[key].shape == want.shape, key
        np.testing.assert_array_equal(back[key], want, err_msg=key)
    # cnnx -> torch: values torch never held; the reference loads them strictly and computes
    # cnnx's logits.
    trained = _perturbed(variables)
    exported = convert.to_torch(case.name, trained, net.state_dict())
    net.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
    spec = models.get_spec(case.name)
    x = normalise(raw_images(2, case.resolution), spec.mean, spec.std)
    with torch.no_grad():
        ref = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    model = models.create(case.name, **options)
    out = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(trained, x))
    assert rel_error(out, ref) < 1e-4
