"""cnnx.backends.xla_flags, and importing cnnx leaving the process environment alone."""

import json
import os
import subprocess
import sys

from cnnx.backends import xla_flags as flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_defaults_respect_the_user_and_the_version(monkeypatch):
    monkeypatch.setattr(flags, "_jaxlib_version", lambda: (0, 10))
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    added = flags.apply(env)
    assert added == ["--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"]
    assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=8", *added]
    assert flags.apply(env) == []  # already named: left as it is
    mine = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}
    assert flags.apply(mine) == [] and mine["XLA_FLAGS"].endswith("=")
    assert flags.apply({"CNNX_XLA_DEFAULTS": "0"}) == []
    monkeypatch.setattr(flags, "_jaxlib_version", lambda: (0, 9))
    assert flags.apply({}) == []  # the flag may not exist there: never set it


def test_importing_cnnx_leaves_the_environment_unchanged():
    code = (
        "import json, os; before = dict(os.environ); "
        "import cnnx, cnnx.models, cnnx.layers, cnnx.backends.cpu.conv; "
        "print(json.dumps([before, dict(os.environ)]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "CNNX_XLA_DEFAULTS")}
    env["PYTHONPATH"] = ROOT
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    before, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert after == before
    assert "XLA_FLAGS" not in after


def test_flags_module_does_not_import_jax():
    # The entry points import it before anything else; it must stay light and not start JAX.
    code = "import sys; import cnnx.process_defaults; print('jax' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
