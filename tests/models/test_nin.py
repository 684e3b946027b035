"""Network in Network (ImageNet and CIFAR-10 models): counts, map sizes, options."""

import jax
import jax.numpy as jnp
import pytest

from cnnx import models
from tests.models.helpers import abstract_variables, count_params

# name: (exact parameter count, resolution, spatial size of the class maps before pooling)
CASES = {
    "nin": (7_595_176, 224, 6),
    "nin_cifar": (966_986, 32, 8),
}


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_param_count(name):
    count, _, _ = CASES[name]
    assert count_params(abstract_variables(name)) == count == models.get_spec(name).param_count


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_class_maps_at_reference_resolution(name):
    # Caffe's ceil-mode pooling: 224 -> 54 -> 27 -> 13 -> 6 (ImageNet), 32 -> 16 -> 8 (CIFAR).
    _, resolution, size = CASES[name]
    model = models.create(name)
    x = jnp.zeros((1, resolution, resolution, 3))
    _, state = jax.eval_shape(
        lambda: model.init_with_output(
            jax.random.PRNGKey(0), x, train=False, capture_intermediates=True
        )
    )
    head = state["intermediates"]["head"]["__call__"][0]
    assert head.shape == (1, size, size, models.get_spec(name).num_classes)


def test_no_fully_connected_layer():
    params = abstract_variables("nin")["params"]
    assert all(v["kernel"].ndim == 4 for v in params.values())
    assert len(params) == 4 * 3  # four mlpconv blocks of three convolutions


def test_depth_and_width_mult():
    params = abstract_variables("nin_cifar", depth_mult=2.0, width_mult=0.5)["params"]
    assert len([k for k in params if k.startswith("block1_")]) == 1 + 4
    assert params["block1_conv0"]["kernel"].shape[-1] == 96
    assert params["head"]["kernel"].shape[-1] == 10  # class maps are not scaled
    # Fewer layers keep each block's output width, so a shallower NiN is a smaller one.
    shallow = abstract_variables("nin_cifar", depth_mult=0.01)["params"]
    assert [k for k in shallow if k.startswith("block1_")] == ["block1_conv0", "block1_conv1"]
    assert shallow["block1_conv1"]["kernel"].shape[-1] == 96  # the block's last width
    assert count_params({"params": shallow}) < models.get_spec("nin_cifar").param_count


def test_features_mode_and_relu_class_maps():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
    feats = models.create("nin_cifar", num_classes=0)
    out = jax.eval_shape(lambda: feats.init_with_output(jax.random.PRNGKey(0), x, train=False)[0])
    assert out.shape == (2, 192)
    model = models.create("nin_cifar", relu_class_maps=True)
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    assert (model.apply(variables, x, train=False) >= 0).all()
