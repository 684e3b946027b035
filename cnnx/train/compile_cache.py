"""JAX's persistent compilation cache, on by default for train.py and eval.py.

A launch compiles its steps again unless XLA's executables are kept between processes: with
JAX's persistent cache (`jax_compilation_cache_dir`) a second launch of the same config (same
model, shapes, shardings, devices and XLA flags; any workdir) reads them from disk instead.
One cache is shared by all workdirs:

- default: `$XDG_CACHE_HOME/cnnx/jax`, else `~/.cache/cnnx/jax`;
- `--compilation_cache=DIR` (local or gs://, e.g. one bucket folder shared by the hosts of a
  TPU pod), or `--compilation_cache=off`;
- without the flag, JAX's own settings win (`JAX_COMPILATION_CACHE_DIR`, or
  `JAX_ENABLE_COMPILATION_CACHE=false` to turn it off), then the `CNNX_COMPILATION_CACHE`
  environment variable (a folder or `off`), then the default.

JAX stores only programs that took at least `jax_persistent_cache_min_compile_time_secs` to
compile (1 s by default): most of a CPU smoke run's programs take less, so unless that
setting was given, cnnx lowers it to `MIN_COMPILE_TIME_SECS`.
"""

import os

import jax
from absl import flags, logging

from cnnx.backends import switches
from cnnx.train.workdir import is_remote

OFF = ("off", "none", "false", "0", "")
# Programs that compile faster than this are not worth a file (or a gs:// object) each.
MIN_COMPILE_TIME_SECS = 0.1
ENV = switches.COMPILATION_CACHE

_FLAG = "compilation_cache"
FLAGS = (_FLAG,)  # the flags `define_flags` defines


def define_flags() -> None:
    """Defines --compilation_cache (for train.py, eval.py)."""
    flags.DEFINE_string(
        _FLAG,
        None,
        "Persistent XLA compilation cache shared by all runs: a folder (local or gs://) or "
        f"'off' (default: ${ENV}, else $XDG_CACHE_HOME/cnnx/jax, else ~/.cache/cnnx/jax).",
    )


def default_dir() -> str:
    """`$XDG_CACHE_HOME/cnnx/jax`, else `~/.cache/cnnx/jax`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cnnx", "jax")


def setup(directory: str | None = None) -> str | None:
    """Turns on JAX's persistent compilation cache; call before anything is compiled.

    Args:
      directory: a folder (local or gs://) or 'off'. None: the --compilation_cache flag if
        given; else JAX's own setting (`JAX_COMPILATION_CACHE_DIR`,
        `JAX_ENABLE_COMPILATION_CACHE`) if any; else `$CNNX_COMPILATION_CACHE`; else
        `default_dir()`.

    Returns:
      The cache folder in use, or None when the cache is off.
    """
    if directory is None and _FLAG in flags.FLAGS and flags.FLAGS[_FLAG].present:
        directory = flags.FLAGS[_FLAG].value
    if directory is None:
        if not jax.config.jax_enable_compilation_cache:
            return None
        if jax.config.jax_compilation_cache_dir:
            return jax.config.jax_compilation_cache_dir
        directory = switches.compilation_cache() or default_dir()
    if directory.strip().lower() in OFF:
        jax.config.update("jax_compilation_cache_dir", None)
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    if not is_remote(directory):
        directory = os.path.abspath(os.path.expanduser(directory))
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", directory)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_SECS)
    logging.info("Persistent compilation cache: %s", directory)
    return directory
