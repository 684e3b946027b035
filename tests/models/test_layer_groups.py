"""Layer groups (issue 31, item 3): cnnx's depth numbering is timm's `param_groups_layer_decay`.

timm builds its models on the meta device (shapes only) and assigns each parameter an lr
scale; cnnx's `lr_multipliers` of the same architecture must give the same scales: per
parameter, matched through the weight converter's names, where the converter speaks timm's
names (ResNet, ViT, ConvNeXt, EfficientNet, SE-ResNet), and for every family as the number
of parameters at each scale (Swin's converter speaks torchvision's names).
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from cnnx import models
from cnnx.convert.core import get_mapping, placements
from cnnx.models.layer_groups import STAGED, VIT, lr_multipliers

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytestmark = pytest.mark.torch

DECAY = 0.5  # powers of two: scales compare exactly


def _timm_scales(arch: str) -> tuple[dict[str, float], dict[str, tuple]]:
    from timm.optim._param_groups import param_groups_layer_decay

    with torch.device("meta"):
        module = timm.create_model(arch, pretrained=False, num_classes=10)
    named = dict(module.named_parameters())
    by_id = {id(p): n for n, p in named.items()}
    scales = {
        by_id[id(p)]: g["lr_scale"]
        for g in param_groups_layer_decay(module, layer_decay=DECAY)
        for p in g["params"]
    }
    return scales, {n: tuple(p.shape) for n, p in named.items()}


def _cnnx_params(name: str):
    spec = models.get_spec(name)
    model = models.create(name, num_classes=10)
    size = spec.resolution if spec.family == "vit" else 64  # ViT's position table: its own
    variables = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)), train=False)
    )
    return spec, traverse_util.flatten_dict(variables)


CASES = [  # (cnnx model, timm model, the converter speaks timm's names)
    ("resnet18", "resnet18", True),
    ("vit_ti_16", "vit_tiny_patch16_224", True),
    ("convnext_tiny", "convnext_tiny", True),
    ("swin_t", "swin_tiny_patch4_window7_224", False),
    ("seresnet50", "legacy_seresnet50", True),
    ("tf_efficientnet_b0", "tf_efficientnet_b0", True),
    ("mobilenet_v2", "mobilenetv2_100", False),
    ("mobilenet_v3_large", "mobilenetv3_large_100", False),
    ("mobilenetv1_100", "mobilenetv1_100", True),
]


@pytest.mark.parametrize(("name", "arch", "same_names"), CASES, ids=[c[0] for c in CASES])
def test_multipliers_are_timms(name, arch, same_names):
    timm_scale, shapes = _timm_scales(arch)
    spec, flat = _cnnx_params(name)
    sizes = {"/".join(k[1:]): int(np.prod(v.shape)) for k, v in flat.items() if k[0] == "params"}
    ours = lr_multipliers(spec.layer_groups, sizes, DECAY)

    per_scale_timm, per_scale_ours = collections.Counter(), collections.Counter()
    for n, shape in shapes.items():
        per_scale_timm[timm_scale[n]] += int(np.prod(shape))
    for p, size in sizes.items():
        per_scale_ours[ours[p]] += size
    assert per_scale_ours == per_scale_timm
    assert max(ours.values()) == 1.0 and len(per_scale_ours) > 5

    if same_names:
        mapping = get_mapping(spec.family)
        for n, shape in shapes.items():
            for path, _ in placements(n, np.zeros(shape, np.float32), mapping, flat):
                assert ours["/".join(path[1:])] == timm_scale[n], (n, path)


def test_depths_by_hand():
    resnet = ["stem/conv/kernel", "stage1_block0/conv1/kernel", "stage1_block1/bn/scale"]
    resnet += ["stage2_block0/downsample/kernel", "stage10_block0/conv1/kernel", "head/fc/bias"]
    depth, n = STAGED.depths(resnet)
    # stage10 after stage2: integers, not strings, order the blocks.
    assert [depth[p] for p in resnet] == [0, 1, 2, 3, 4, 5] and n == 6
    vit = ["cls_token", "pos_embed", "patch_embed/kernel", "block0/norm1/scale"]
    vit += ["block1/mlp/fc1/kernel", "norm/scale", "head/fc/kernel", "head_norm/scale"]
    depth, n = VIT.depths(vit)
    assert [depth[p] for p in vit] == [0, 0, 0, 1, 2, 2, 3, 3] and n == 4
    assert lr_multipliers(VIT, vit, 0.1)["cls_token"] == pytest.approx(1e-3)
