"""cnnx.backends as the one door: dispatch by platform, a platform joining, no side entrance."""

import ast
import os
import pathlib
import sys
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from cnnx import backends
from cnnx.backends import portable, routes
from cnnx.layers import transformer
from cnnx.layers.conv import Conv

ROOT = pathlib.Path(__file__).resolve().parents[2]
# What must reach platform kernels through `cnnx.backends` only. Tests are not scanned: those
# of the CPU routes (tests/backends/) call them directly, as they should.
SCANNED = ["cnnx", "scripts", "configs", "train.py", "eval.py"]


def _imported_modules(tree: ast.AST) -> set[str]:
    """Every module an import statement names (in functions too), with `from a import b` as
    both `a` and `a.b`."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_nothing_outside_backends_imports_a_platform_module():
    offenders = []
    for entry in SCANNED:
        path = ROOT / entry
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            rel = file.relative_to(ROOT).as_posix()
            if rel.startswith("cnnx/backends/"):
                continue
            for name in _imported_modules(ast.parse(file.read_text(encoding="utf-8"))):
                if name == "cnnx.backends.cpu" or name.startswith("cnnx.backends.cpu."):
                    offenders.append(f"{rel}: {name}")
    assert not offenders, "import cnnx.backends instead:\n" + "\n".join(offenders)


def test_the_scan_sees_in_function_imports():
    tree = ast.parse("def f():\n    from cnnx.backends import cpu\n")
    assert "cnnx.backends.cpu" in _imported_modules(tree)


def test_importing_the_door_imports_no_jax():
    import subprocess

    code = "import sys; import cnnx.backends; print('jax' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def _conv_jaxpr():
    x, w = jnp.ones((1, 8, 8, 8)), jnp.ones((1, 1, 8, 8))
    dn = ("NHWC", "HWIO", "NHWC")
    grad = jax.grad(
        lambda w: backends.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=dn).sum()
    )
    return str(jax.make_jaxpr(grad)(w))


def test_another_platform_takes_the_portable_routes(monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "auto")
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert routes.platform() == "tpu" and routes.active() is portable.ROUTES
    assert isinstance(transformer.layer_norm(1e-6, "norm"), nn.LayerNorm)
    assert "dot_general" not in _conv_jaxpr()  # XLA's own weight gradient
    assert backends.describe() == "XLA (tpu)"
    assert backends.conv_kernels() == {}
    assert backends.remat_compiler_options() is None
    assert backends.remat_compiler_options("cpu") == {
        "xla_disable_hlo_passes": "cse_barrier_expander"
    }
    # The switch forces the CPU routes on any backend (tests use it).
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    assert routes.active().name == "cpu" and "dot_general" in _conv_jaxpr()  # 1x1 as products


def test_portable_only_overrides_platform_and_switches(monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    assert routes.active().name == "cpu"
    with backends.portable_only():
        assert routes.active() is portable.ROUTES
        assert "dot_general" not in _conv_jaxpr()  # XLA's own weight gradient
        assert isinstance(transformer.layer_norm(1e-6, "norm"), nn.LayerNorm)
    assert routes.active().name == "cpu"


def test_cpu_routes_follow_their_switch(monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "auto")
    assert jax.default_backend() == "cpu" and routes.active().gelu is not portable.gelu
    monkeypatch.setenv("CNNX_CPU_GRADS", "xla")
    active = routes.active()
    # Convolutions keep the CPU route (oneDNN has its own switch); the rest is portable.
    assert (
        active.name == "cpu"
        and active.conv_general_dilated is not portable.ROUTES.conv_general_dilated
    )
    assert active.gelu is portable.gelu and active.layer_norm is portable.layer_norm
    assert "cnnx" in backends.conv_kernels()


def test_a_platform_joins_by_registering_its_routes(monkeypatch):
    """A new platform's module and one line in the table: the layers take its kernels."""
    calls = []

    def gelu(x):
        calls.append(x.shape)
        return portable.gelu(x)

    module = types.ModuleType("cnnx_test_platform")
    module.routes = lambda: routes.Routes(
        **{**vars(portable.ROUTES), "name": "test", "gelu": gelu, "describe": lambda: "test"}
    )
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(routes.PLATFORMS, "gpu", module.__name__)
    monkeypatch.setenv("CNNX_CPU_GRADS", "auto")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    x = jnp.ones((2, 3))
    assert (transformer.gelu(x) == portable.gelu(x)).all() and calls == [(2, 3)]
    assert backends.describe() == "test"


@pytest.mark.parametrize("route", ["xla", "custom"])
def test_conv_module_names_and_parameters_do_not_depend_on_the_route(route, monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", route)
    variables = Conv(4, (1, 1)).init(jax.random.PRNGKey(0), jnp.ones((1, 4, 4, 8)))
    assert jax.tree.map(jnp.shape, variables) == {"params": {"kernel": (1, 1, 8, 4), "bias": (4,)}}
