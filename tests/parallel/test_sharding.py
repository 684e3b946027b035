"""Meshes beyond data parallelism: shapes, sharding rules, state shardings, FSDP checkpoints
restored onto other device counts."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from cnnx.errors import ConfigError
from cnnx.parallel.mesh import batch_sharding, check_batch, make_mesh, mesh_shape, replicated
from cnnx.parallel.sharding import (
    auto_spec,
    param_specs,
    shardings_from_config,
    state_shardings,
    with_shardings,
)
from cnnx.train import finetune, optim, steps
from cnnx.train.build import init_state
from cnnx.train.checkpoint import Checkpointer
from cnnx.train.experiment import setup
from cnnx.train.state import create_train_state
from tests.train.tiny import tiny_config

# mesh_shape(devices, data, fsdp, model) -> (data, fsdp, model), or the error's text.
MESH_CASES = [
    ((8, -1, 1, 1), (8, 1, 1)),
    ((8, -1, 4, 1), (2, 4, 1)),
    ((8, -1, 4, 2), (1, 4, 2)),
    ((8, 1, 8, 1), (1, 8, 1)),
    ((8, 1, 4, 1), (1, 4, 1)),  # a subset: the first 4 devices
    ((8, -1, 3, 1), "does not divide the 8 devices"),
    ((8, 4, 4, 1), "asks for 16 devices"),
    ((8, -1, 0, 1), "mesh.fsdp=0 must be a positive integer"),
    ((8, -1, 1, -1), "only mesh.data may be -1"),
    ((8, 2, 2, 2), "uses all three axes"),  # see test_xla_three_axis_partitioning_bug
]


@pytest.mark.parametrize("args,expected", MESH_CASES, ids=[str(c[0]) for c in MESH_CASES])
def test_mesh_shape(args, expected):
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            mesh_shape(*args)
    else:
        assert mesh_shape(*args) == expected


def test_batch_is_split_over_data_and_fsdp():
    mesh = make_mesh(4, 1, 2)
    assert mesh.axis_names == ("data", "fsdp", "model")
    assert batch_sharding(mesh).spec == P(("data", "fsdp"))
    check_batch(12, mesh)  # 12 splits into data × fsdp = 4 blocks (model does not split it)
    with pytest.raises(ConfigError, match="multiple of 4"):
        check_batch(10, mesh)
    assert batch_sharding(make_mesh(1, 4, 2)).spec == P(("data", "fsdp"))
    with pytest.raises(ConfigError, match="multiple of 8"):
        setup(tiny_config(**{"train.batch_size": 12, "mesh.fsdp": 2}))


def _abstract(*shapes):
    return {f"p{i}": jax.ShapeDtypeStruct(s, jnp.float32) for i, s in enumerate(shapes)}


def test_auto_rule():
    mesh = make_mesh(2, 4, 1)
    assert auto_spec((3, 3, 64, 128), mesh, 0) == P(None, None, None, "fsdp")
    assert auto_spec((1024, 10), mesh, 0) == P("fsdp", None)
    assert auto_spec((6, 10), mesh, 0) == P(None, None)  # nothing divides: replicated
    assert auto_spec((256, 512), mesh) == P()  # below the default size threshold (2**18)
    assert auto_spec((1024, 1024), make_mesh(8)) == P()  # no fsdp axis to shard over
    tp = make_mesh(1, 4, 2)
    assert auto_spec((768, 3072), tp, 0) == P("fsdp", "model")


def test_explicit_rules_first_match_wins_and_errors_name_the_parameter():
    mesh = make_mesh(1, 4, 2)
    params = {"head": _abstract((512, 1002)), "body": _abstract((3, 3, 64, 64), (64,))}
    rules = [
        ("head", ("...", "model")),  # aligned to the last dimension
        (r"body/p1", "replicated"),
        ("body", (None, None, ("fsdp", "model"))),
    ]
    specs = param_specs(params, mesh, rules, min_size=0)
    assert specs["head"]["p0"] == P(None, "model")
    assert specs["body"]["p0"] == P(None, None, ("fsdp", "model"))
    assert specs["body"]["p1"] == P()
    with pytest.raises(ConfigError, match=r"head/p0 \(512, 1002\).*8 devices"):
        param_specs(params, mesh, [("head", (None, ("fsdp", "model")))])
    with pytest.raises(ConfigError, match="not a mesh axis"):
        param_specs(params, mesh, [("head", ("tensor",))])
    with pytest.raises(ConfigError, match="bad regular expression"):
        param_specs(params, mesh, [("head(", "auto")])
    with pytest.raises(ConfigError, match="at most 2"):
        param_specs(params, mesh, [("head", (None, None, "fsdp"))])


@pytest.mark.parametrize("name", ["sgd", "adamw", "lars"])
def test_optimizer_state_and_ema_follow_their_parameters(name):
    config = tiny_config(**{"optim.name": name})
    config.train.ema_decay = 0.9
    exp = setup(config)
    mesh = make_mesh(2, 4, 1)
    # A frozen / slow partition wraps the optimizer state in multi_transform + masked states.
    tx = finetune.partition_optimizer(
        optim.make_optimizer(config.optim, optax.constant_schedule(0.1)),
        "c5|f6|output",
        "output",
        0.1,
    )
    create = functools.partial(create_train_state, exp.model, tx, input_shape=exp.input_shape)
    abstract = jax.eval_shape(functools.partial(create, ema=True), jax.random.PRNGKey(0))
    shardings = state_shardings(abstract, mesh, min_size=0)
    c5 = shardings.params["c5"]["kernel"]
    assert c5.spec == P(None, None, None, "fsdp")  # (5, 5, 16, 120)
    assert shardings.ema_params["c5"]["kernel"] == c5
    mirrored = [
        s
        for leaf, s in zip(
            jax.tree.leaves(abstract.opt_state), jax.tree.leaves(shardings.opt_state)
        )
        if leaf.shape == (5, 5, 16, 120)
    ]
    assert mirrored and all(s == c5 for s in mirrored)  # momentum / moments / LARS buffers
    scalars = [
        s
        for leaf, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings))
        if not leaf.shape
    ]
    assert all(s.spec == P() for s in scalars)  # step and optimizer counters
    assert all(s.spec == P() for s in jax.tree.leaves(shardings.batch_stats))


def _train(config, n):
    """n steps on one fixed random batch (no input pipeline: the sharding is under test)."""
    exp = setup(config)
    schedule = optax.constant_schedule(0.1)
    tx = optim.make_optimizer(config.optim, schedule)
    state, shardings = init_state(exp, tx, jax.random.PRNGKey(0))
    fn = jax.jit(
        functools.partial(
            steps.train_step,
            num_classes=10,
            schedule=schedule,
            options=steps.StepOptions.default(ema_decay=0.9),
        ),
        in_shardings=(shardings, batch_sharding(exp.mesh), replicated(exp.mesh)),
        out_shardings=(shardings, replicated(exp.mesh)),
        donate_argnums=(0,),
    )
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.normal(size=(config.train.batch_size, *exp.input_shape[1:])),
        "label": rng.integers(0, 10, config.train.batch_size),
    }
    batch = jax.device_put(
        {"image": batch["image"].astype(np.float32), "label": batch["label"].astype(np.int32)},
        batch_sharding(exp.mesh),
    )
    losses = []
    for _ in range(n):
        state, metrics = fn(state, batch, jax.random.PRNGKey(1))
        losses.append(float(metrics["loss"]))
    return losses, state


FSDP = {"mesh.data": 2, "mesh.fsdp": 4, "mesh.fsdp_min_size": 0, "train.ema_decay": 0.9}


def test_fsdp_checkpoint_restores_onto_one_and_four_devices(tmp_path):
    """Saved from a data=2 × fsdp=4 mesh; read back on 1 device and on a 4-device fsdp mesh.

    (FSDP losses equal data-parallel ones: tests/train/test_multiprocess.py, across hosts.)
    """
    config = tiny_config(**FSDP)
    _, state = _train(config, 2)
    kernel = state.params["c5"]["kernel"]
    assert kernel.sharding.spec == P(None, None, None, "fsdp")
    assert kernel.addressable_shards[0].data.shape == (5, 5, 16, 30)  # a quarter per device
    ckpt = Checkpointer(os.path.join(tmp_path, "checkpoints"), asynchronous=False)
    ckpt.save(2, state, wait=True)
    saved = jax.device_get(state)
    for mesh, devices, spec in (
        ({"mesh.data": 1, "mesh.fsdp": 1}, 1, P()),  # one device, nothing sharded
        ({"mesh.data": 1, "mesh.fsdp": 4}, 4, P(None, None, None, "fsdp")),  # 4 devices
    ):
        exp = setup(tiny_config(**{**FSDP, **mesh}))
        assert exp.mesh.size == devices
        tx = optim.make_optimizer(config.optim, optax.constant_schedule(0.1))
        create = functools.partial(
            create_train_state, exp.model, tx, input_shape=exp.input_shape, ema=True
        )
        # An abstract template: shapes and the new mesh's shardings, nothing compiled.
        abstract = jax.eval_shape(create, jax.random.PRNGKey(0))
        template = with_shardings(
            abstract, shardings_from_config(abstract, exp.mesh, exp.config.mesh)
        )
        restored = ckpt.restore(template)
        c5 = restored.params["c5"]["kernel"]
        assert c5.sharding.spec == spec and len(c5.sharding.device_set) == devices
        moments = [x for x in jax.tree.leaves(restored.opt_state) if x.shape == c5.shape]
        assert moments and all(x.sharding == c5.sharding for x in moments)
        assert restored.ema_params["c5"]["kernel"].sharding == c5.sharding
        assert int(restored.step) == 2
        for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(restored)):
            np.testing.assert_array_equal(a, np.asarray(b))
    ckpt.close()


def test_a_saved_mesh_adapts_to_the_devices_at_evaluation():
    from cnnx.checkpoint_eval import _fit_mesh
    from cnnx.config_schema import base_config

    for saved, expected in (
        ((2, 4, 1), (2, 4, 1)),  # fits the 8 devices: kept
        ((4, 4, 1), (-1, 4, 1)),  # trained on 16 devices: fsdp=4 still divides 8
        ((-1, 16, 1), (-1, 1, 1)),  # trained with fsdp=16: nothing left of it here
    ):
        c = base_config()
        c.mesh.data, c.mesh.fsdp, c.mesh.model = saved
        _fit_mesh(c)
        assert (c.mesh.data, c.mesh.fsdp, c.mesh.model) == expected


def _grads_on_mesh(shape, specs):
    """Gradients of a 3-line network with its inputs sharded by `specs` on a `shape` mesh,
    next to the unsharded ones."""
    from jax.sharding import Mesh, NamedSharding

    k = jax.random.split(jax.random.PRNGKey(0), 3)
    args = (jax.random.normal(k[0], (32, 16)), jax.random.normal(k[1], (16,)))
    args += (jax.random.normal(k[2], (16, 120)),)

    def f(x, scale, w):  # a per-feature scale, then a dense layer
        return jnp.sum(jnp.tanh((jnp.tanh(x) * scale) @ w) ** 2)

    grad = jax.grad(f, argnums=(0, 1, 2))
    mesh = Mesh(np.array(jax.devices()).reshape(shape), ("data", "fsdp", "model"))
    sharded = jax.jit(grad, in_shardings=tuple(NamedSharding(mesh, s) for s in specs))(*args)
    return jax.jit(grad)(*args), sharded


def test_fsdp_with_tensor_parallelism_computes_the_right_gradients():
    want, got = _grads_on_mesh((1, 4, 2), (P(("data", "fsdp")), P("model"), P("fsdp", "model")))
    for a, b in zip(want, got):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.xfail(strict=True, reason="XLA bug: why mesh_shape refuses data, fsdp, model > 1")
def test_xla_three_axis_partitioning_bug():
    """When this starts passing, XLA is fixed: lift the three-axis check in `mesh_shape`."""
    want, got = _grads_on_mesh((2, 2, 2), (P(("data", "fsdp")), P("model"), P("fsdp", "model")))
    for a, b in zip(want, got):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
