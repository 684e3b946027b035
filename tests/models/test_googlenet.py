"""GoogLeNet (torchvision port and the paper's v1): counts with/without aux heads, parity,
auxiliary outputs in train vs eval mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnx import models
from tests.models.helpers import abstract_variables, count_params, torch_parity

try:  # Imported at collection: torchvision imported after tensorflow (conftest) segfaults.
    import torch
    import torchvision
except ImportError:
    torch = torchvision = None

# (name, aux_logits): exact parameter count
COUNTS = {
    ("googlenet", True): 13_004_888,
    ("googlenet", False): 6_624_904,
    ("googlenet_v1", True): 13_378_280,
    ("googlenet_v1", False): 6_998_552,
}


def _randomize_bn(model):
    """Non-trivial BatchNorm statistics, so parity also checks the running averages."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model


@pytest.mark.parametrize(
    "name,aux,count",
    [(n, a, c) for (n, a), c in COUNTS.items()],
    ids=[f"{n}-aux{a}" for n, a in COUNTS],
)
def test_param_count(name, aux, count):
    assert count_params(abstract_variables(name, aux_logits=aux)) == count
    if aux:
        assert models.get_spec(name).param_count == count


@pytest.mark.torch
@pytest.mark.parametrize("aux", [True, False], ids=["aux", "noaux"])
def test_param_count_matches_torchvision(aux):
    if torchvision is None:
        pytest.skip("needs torchvision")
    with torch.device("meta"):
        ref = torchvision.models.googlenet(weights=None, aux_logits=aux, init_weights=False)
    assert sum(p.numel() for p in ref.parameters()) == COUNTS[("googlenet", aux)]


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("resolution", [15, 47], ids=["15px", "47px"])
def test_torchvision_parity(resolution):
    # 15 px is torchvision's minimum; 47 px exercises ceil-mode pools with partial windows.
    if torchvision is None:
        pytest.skip("needs torchvision")
    torch.manual_seed(0)
    ref = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    assert torch_parity("googlenet", _randomize_bn(ref), resolution) < 1e-4


@pytest.mark.parametrize("name", ["googlenet", "googlenet_v1"])
def test_aux_heads_train_vs_eval(name):
    r = models.get_spec(name).test_resolution
    x = jax.random.normal(jax.random.PRNGKey(0), (2, r, r, 3))
    kw = dict(num_classes=5, width_mult=0.25, depth_mult=0.01)
    model = models.create(name, **kw)
    variables = jax.jit(lambda: model.init(jax.random.PRNGKey(0), x, train=False))()
    assert {"aux1", "aux2"} <= set(variables["params"])

    @jax.jit
    def run(v):
        rngs = {"dropout": jax.random.PRNGKey(1)}
        train = model.apply(v, x, train=True, mutable=["batch_stats"], rngs=rngs)[0]
        return train, model.apply(v, x, train=False)

    (logits, aux), evaluated = run(variables)
    assert logits.shape == (2, 5) and len(aux) == 2 and all(a.shape == (2, 5) for a in aux)
    assert isinstance(evaluated, jax.Array) and evaluated.shape == (2, 5)
    no_aux = models.create(name, aux_logits=False, **kw)
    params = jax.eval_shape(lambda: no_aux.init(jax.random.PRNGKey(0), x, train=False))["params"]
    assert not {"aux1", "aux2"} & set(params)
    rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
    out = jax.eval_shape(lambda: no_aux.init_with_output(rngs, x, train=True)[0])
    assert isinstance(out, jax.ShapeDtypeStruct) and out.shape == (2, 5)


def test_paper_variant_structure():
    params = abstract_variables("googlenet_v1")["params"]
    assert params["inception3a"]["branch3_1"]["conv"]["kernel"].shape[:2] == (5, 5)
    assert "bias" in params["conv1"]["conv"] and "bn" not in params["conv1"]
    tv = abstract_variables("googlenet")["params"]
    assert tv["inception3a"]["branch3_1"]["conv"]["kernel"].shape[:2] == (3, 3)


def test_depth_mult_module_counts():
    params = abstract_variables("googlenet", depth_mult=2.0, width_mult=0.25)["params"]
    names = [k for k in params if k.startswith("inception")]
    assert len(names) == 2 * 9 and "inception4j" in names
    out = jax.eval_shape(
        lambda: models.create("googlenet", num_classes=0).init_with_output(
            jax.random.PRNGKey(0), jnp.zeros((1, 15, 15, 3)), train=False
        )[0]
    )
    assert out.shape == (1, 1024)
    assert np.prod(out.shape) == 1024
