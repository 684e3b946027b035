"""A persistent XLA compilation cache for test modules that train the same tiny model often.

Each `train_and_evaluate` compiles some forty programs (init, train and eval steps, orbax's
small transfer programs); most are identical from run to run, and on a 2-core CPU compiling
them is most of a tiny run's time. With the cache a repeated program is read from disk
instead (a tiny run drops from ~12 s to ~2-5 s of CPU). Scoped to the module that asks for
it, in a temporary directory, and the previous settings are restored afterwards.

    pytestmark = pytest.mark.usefixtures("compilation_cache")   # plus the import below
    from tests.jax_cache import compilation_cache  # noqa: F401
"""

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache as cc

_KEYS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def env(directory: str) -> dict[str, str]:
    """Environment variables that point a subprocess's jax at the same cache."""
    return {
        "JAX_COMPILATION_CACHE_DIR": directory,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "1",
    }


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
    """The cache directory; `env(directory)` gives subprocesses (train.py) the same cache."""
    previous = {k: getattr(jax.config, k) for k in _KEYS}
    directory = str(tmp_path_factory.mktemp("xla_cache"))
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 1)
    cc.reset_cache()  # the cache is set up once per process: make it see the new directory
    yield directory
    for k, v in previous.items():
        jax.config.update(k, v)
    cc.reset_cache()
