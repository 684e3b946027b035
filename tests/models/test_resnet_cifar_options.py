"""The CIFAR ResNets' options for the findings suite: no BatchNorm, the kernel initialiser,
1×1 bottleneck blocks (cnnx/models/resnet.py, `CifarResNet`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from cnnx import models
from tests.models.helpers import abstract_variables, count_params

# (name, overrides, exact parameter count): bottleneck blocks of the same stage widths (16 / 32
# / 64 between blocks, a quarter inside), depth 9n + 2.
COUNT_CASES = [
    pytest.param("resnet20_cifar", {}, 269_722, id="basic"),
    pytest.param("resnet20_cifar", {"block": "bottleneck", "depth": 29}, 18_618, id="bottleneck"),
    pytest.param(
        "resnet20_cifar",
        {"block": "bottleneck", "depth": 29, "width_mult": 2.0},
        70_218,
        id="bottleneck_w2",
    ),
    # No BN: the convolutions get biases instead of BN's scale and shift.
    pytest.param("plain20_cifar", {"norm": "none"}, 269_034, id="plain_no_bn"),
]


@pytest.mark.parametrize("name,overrides,count", COUNT_CASES)
def test_option_counts(name, overrides, count):
    assert count_params(abstract_variables(name, 16, **overrides)) == count


def test_without_batchnorm_there_are_no_statistics_and_the_net_runs():
    model = models.create("plain20_cifar", norm="none", depth=8)
    x = jnp.ones((2, 8, 8, 1))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    assert "batch_stats" not in variables
    paths = traverse_util.flatten_dict(variables["params"], sep="/")
    assert "stem/conv/bias" in paths and not any("/bn/" in p for p in paths)
    logits = model.apply(variables, x, train=True)
    assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))


@pytest.mark.parametrize(
    "init,std",
    [
        ("he", np.sqrt(2.0 / (9 * 32))),
        ("glorot", np.sqrt(2.0 / (9 * 32 + 9 * 32))),
        ("normal", 0.01),
    ],
)
def test_kernel_init_sets_the_convolutions_scale(init, std):
    """Standard deviation of a 3×3, 32→32 kernel: He (fan-out, as torchvision) 2/fan, Glorot
    2/(fan_in + fan_out), normal 0.01."""
    model = models.create("plain20_cifar", kernel_init=init, norm="none")
    variables = model.init(jax.random.PRNGKey(0), jnp.ones((1, 16, 16, 3)), train=False)
    kernel = np.asarray(variables["params"]["stage2_block2"]["conv1"]["conv"]["kernel"])
    assert kernel.shape == (3, 3, 32, 32)
    assert kernel.std() == pytest.approx(std, rel=0.1)


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"block": "bottleneck", "depth": 22}, "9n \\+ 2 with bottleneck"),  # 22 != 9n + 2
        ({"block": "wide"}, "block must be"),
        ({"norm": "layer"}, "norm must be"),
        ({"kernel_init": "xavier"}, "kernel_init must be one of"),
    ],
)
def test_bad_options_name_the_choices(overrides, match):
    model = models.create("resnet20_cifar", **overrides)
    with pytest.raises(ValueError, match=match):
        model.init(jax.random.PRNGKey(0), jnp.ones((1, 8, 8, 3)), train=False)
