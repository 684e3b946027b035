"""DenseNet: counts, torchvision parity, scaling options and the memory-efficient variant."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from cnnx import models
from tests.models.helpers import abstract_variables, count_params, torch_parity
from tests.models.test_resnet import randomize_batch_norm

try:  # Imported at collection: torchvision imported after tensorflow (conftest) segfaults.
    import torchvision
except ImportError:
    torchvision = None

# torchvision name -> exact parameter count (torchvision 0.29).
TORCHVISION_COUNTS = {
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
}
# No reference implementation: counts of this module, stated in cnnx/models/densenet.py.
OWN_COUNTS = {"densenet264": 33_337_704, "densenet_bc100_cifar": 769_162}


@pytest.mark.torch
@pytest.mark.parametrize("name", list(TORCHVISION_COUNTS), ids=list(TORCHVISION_COUNTS))
def test_param_count_matches_torchvision(name):
    if torchvision is None:
        pytest.skip("needs torchvision")
    ref = sum(p.numel() for p in getattr(torchvision.models, name)().parameters())
    assert ref == TORCHVISION_COUNTS[name]
    assert count_params(abstract_variables(name)) == ref
    assert models.get_spec(name).param_count == ref


@pytest.mark.parametrize("name", list(OWN_COUNTS), ids=list(OWN_COUNTS))
def test_own_counts(name):
    assert count_params(abstract_variables(name)) == OWN_COUNTS[name]
    assert models.get_spec(name).param_count == OWN_COUNTS[name]


def test_bc100_matches_paper():
    # Huang et al. Table 2: DenseNet-BC (L=100, k=12) has 0.8M parameters.
    assert round(OWN_COUNTS["densenet_bc100_cifar"] / 1e6, 1) == 0.8
    flat = traverse_util.flatten_dict(abstract_variables("densenet_bc100_cifar")["params"])
    layers = {k[0] for k in flat if k[0].startswith("block")}
    assert len(layers) == 48  # 3 blocks × 16 bottleneck layers: 2·48 + 4 = 100 weighted layers
    assert flat[("transition1", "conv", "kernel")].shape == (1, 1, 24 + 16 * 12, 108)


@pytest.mark.torch
@pytest.mark.slow
def test_torchvision_parity_densenet121():
    if torchvision is None:
        pytest.skip("needs torchvision")
    torch_model = randomize_batch_norm(torchvision.models.densenet121())
    assert torch_parity("densenet121", torch_model, 64) < 1e-4


def test_width_and_depth_multipliers():
    flat = traverse_util.flatten_dict(
        abstract_variables("densenet121", width_mult=0.5, depth_mult=0.5)["params"]
    )
    assert flat[("stem", "conv", "kernel")].shape[-1] == 32  # 64 init features × 0.5
    assert flat[("block1_layer0", "conv2", "conv", "kernel")].shape[-1] == 16  # k = 32 × 0.5
    per_block = [len({k[0] for k in flat if k[0].startswith(f"block{i}_")}) for i in (1, 2, 3, 4)]
    assert per_block == [3, 6, 12, 8]


@pytest.mark.slow
def test_memory_efficient_matches_plain():
    name, overrides = "densenet_bc100_cifar", dict(width_mult=0.5, depth_mult=0.125)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 3))
    labels = jnp.array([0, 1, 2, 3])
    plain = models.create(name, **overrides)
    efficient = models.create(name, memory_efficient=True, **overrides)
    variables = plain.init(jax.random.PRNGKey(0), x, train=False)

    def run(model):
        def loss_fn(params):
            logits, updates = model.apply(
                {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
            )
            logp = jax.nn.log_softmax(logits)
            return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], -1)), updates

        return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables["params"])

    (loss_p, upd_p), grads_p = run(plain)
    (loss_e, upd_e), grads_e = run(efficient)
    np.testing.assert_allclose(loss_e, loss_p, rtol=1e-6)
    for a, b in zip(jax.tree.leaves((grads_e, upd_e)), jax.tree.leaves((grads_p, upd_p))):
        # Recomputation reorders float32 sums: differences scale with the largest terms
        # (seen: 1.1e-7 on a 3.7e-4 entry of a kernel gradient whose largest entry is 0.44).
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * float(np.max(np.abs(b))))
