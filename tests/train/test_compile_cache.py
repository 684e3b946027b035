"""The persistent compilation cache of train.py / eval.py (cnnx/train/compile_cache.py)."""

import os
import subprocess
import sys

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache as cc

from cnnx.train import compile_cache

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_KEYS = (
    "jax_compilation_cache_dir",
    "jax_enable_compilation_cache",
    "jax_persistent_cache_min_compile_time_secs",
)


@pytest.fixture
def jax_settings(monkeypatch):
    """Restores JAX's cache settings after the test; starts with no cache directory."""
    previous = {k: getattr(jax.config, k) for k in _KEYS}
    for name in ("CNNX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        monkeypatch.delenv(name, raising=False)
    jax.config.update("jax_compilation_cache_dir", None)
    jax.config.update("jax_enable_compilation_cache", True)
    yield
    for k, v in previous.items():
        jax.config.update(k, v)
    cc.reset_cache()


def test_default_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.default_dir() == str(tmp_path / "cnnx" / "jax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compile_cache.default_dir() == str(tmp_path / "home" / ".cache" / "cnnx" / "jax")


def test_setup_precedence(jax_settings, monkeypatch, tmp_path):
    # No setting anywhere: the user's cache directory, with the lowered compile-time threshold.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.setup() == str(tmp_path / "xdg" / "cnnx" / "jax")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xdg" / "cnnx" / "jax")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == (
        compile_cache.MIN_COMPILE_TIME_SECS
    )
    # JAX's own setting (JAX_COMPILATION_CACHE_DIR) is kept as it is.
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax_own"))
    assert compile_cache.setup() == str(tmp_path / "jax_own")
    # An explicit folder wins (gs:// kept as a URL), and 'off' turns the cache off.
    assert compile_cache.setup("gs://bucket/xla") == "gs://bucket/xla"
    assert compile_cache.setup(str(tmp_path / "mine")) == str(tmp_path / "mine")
    assert compile_cache.setup("off") is None and not jax.config.jax_enable_compilation_cache
    assert compile_cache.setup() is None  # off stays off (JAX_ENABLE_COMPILATION_CACHE=false)
    # The environment variable, when JAX has no directory of its own.
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv("CNNX_COMPILATION_CACHE", str(tmp_path / "env"))
    assert compile_cache.setup() == str(tmp_path / "env")
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv("CNNX_COMPILATION_CACHE", "off")
    assert compile_cache.setup() is None
    # A threshold the user set is left alone.
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.5)
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "2.5")
    compile_cache.setup(str(tmp_path / "mine"))
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.5


def _launch(workdir, cache, env):
    p = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--config=tests/train/tiny.py",
            f"--workdir={workdir}",
            f"--compilation_cache={cache}",
            "--config.train.num_steps=2",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout + p.stderr


def _entries(cache) -> set[str]:
    return {n for n in os.listdir(cache) if n.endswith("-cache")}


@pytest.mark.slow
def test_second_launch_in_another_workdir_reuses_the_compiled_steps(tmp_path):
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    # With jax_log_compiles JAX logs each persistent cache hit as a warning (cnnx's log filter
    # keeps JAX's debug and info lines out).
    env.update(PYTHONPATH=REPO, JAX_LOG_COMPILES="1")
    first = _launch(tmp_path / "a", cache, env)
    stored = _entries(cache)
    for step in ("jit_train_step", "jit_eval_step", "jit_create_train_state"):
        assert any(n.startswith(f"{step}-") for n in stored), (step, sorted(stored))
        assert f"Persistent compilation cache hit for '{step}'" not in first
    second = _launch(tmp_path / "b", cache, env)
    for step in ("jit_train_step", "jit_eval_step", "jit_create_train_state"):
        assert f"Persistent compilation cache hit for '{step}'" in second, step
    # Nothing of the steps was compiled again: no new entries of theirs.
    new = _entries(cache) - stored
    assert not [n for n in new if n.startswith(("jit_train_step", "jit_eval_step"))], new
