"""cnnx's switches: every `CNNX_*` environment variable, read here and nowhere else.

As timm's `layers/config.py`: one module that says which implementation choices exist, what
values they take and what they default to. Each variable is read when it is used (a layer
traced, a process started), so a test or a launcher may change it in between; a value outside
the documented ones is a `ConfigError` that names them. This module must not import JAX: the
entry points read `CNNX_XLA_DEFAULTS` before JAX starts.

* `CNNX_CPU_GRADS`, read when a layer is traced (`cnnx.backends`): `auto` (default: the CPU
  routes where JAX's default backend is the CPU), `xla` (never; also `off`, `0`) or `custom`
  (on any backend, for tests; also `on`, `1`).
* `CNNX_ONEDNN`, read by the CPU convolution and dense-product routes: `auto` (default:
  oneDNN's convolutions and matmuls in a one-device CPU process when the extension is
  built), `on` (always; an error without the extension; also `1`, `true`) or `off` (also
  `0`, `false`).
* `CNNX_XLA_DEFAULTS`, read by `process_defaults.apply()`: `on` (default: cnnx's XLA flags are
  added to `XLA_FLAGS`; also `1`, `true`) or `off` (also `0`, `false`).
* `CNNX_COMPILATION_CACHE`, read by `cnnx.train.compile_cache.setup`: a folder (local or
  gs://) or `off`.

Two switches are set in code rather than in the environment: `lax_only()`, entered by the
tools that read convolutions from a jaxpr, and `portable_only()`, entered by what traces a
program for another platform than this one (a serving artefact).
"""

import contextlib
import contextvars
import dataclasses
import os

from cnnx.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Choice:
    """An environment variable with a fixed set of values.

    Attributes:
      name: the variable, e.g. 'CNNX_ONEDNN'.
      values: the documented values, the default first.
      aliases: other accepted spellings -> the value they mean.
    """

    name: str
    values: tuple[str, ...]
    aliases: dict[str, str] = dataclasses.field(default_factory=dict)

    def read(self, environ=os.environ) -> str:
        """The variable's value (the default when unset), aliases resolved, lower case.

        Raises:
          ConfigError: a value that is neither a documented value nor an alias.
        """
        raw = environ.get(self.name)
        if raw is None:
            return self.values[0]
        value = raw.strip().lower()
        value = self.aliases.get(value, value)
        if value not in self.values:
            raise ConfigError(
                f"{self.name}={raw!r}: expected {', '.join(self.values[:-1])} or "
                f"{self.values[-1]} (unset means {self.values[0]})"
            )
        return value


CPU_GRADS = Choice(
    "CNNX_CPU_GRADS",
    ("auto", "xla", "custom"),
    {"off": "xla", "0": "xla", "on": "custom", "1": "custom"},
)
ONEDNN = Choice(
    "CNNX_ONEDNN", ("auto", "on", "off"), {"1": "on", "true": "on", "0": "off", "false": "off"}
)
XLA_DEFAULTS = Choice(
    "CNNX_XLA_DEFAULTS", ("on", "off"), {"1": "on", "true": "on", "0": "off", "false": "off"}
)
COMPILATION_CACHE = "CNNX_COMPILATION_CACHE"


def cpu_grads() -> str:
    """`CNNX_CPU_GRADS`: 'auto', 'xla' or 'custom'."""
    return CPU_GRADS.read()


def onednn() -> str:
    """`CNNX_ONEDNN`: 'auto', 'on' or 'off'."""
    return ONEDNN.read()


def xla_defaults(environ=os.environ) -> bool:
    """`CNNX_XLA_DEFAULTS`: whether cnnx adds its XLA flags (`environ`: tests pass a dict)."""
    return XLA_DEFAULTS.read(environ) == "on"


def compilation_cache() -> str | None:
    """`CNNX_COMPILATION_CACHE`: a folder or 'off' as given, None when unset or empty."""
    return os.environ.get(COMPILATION_CACHE) or None


_LAX_ONLY = contextvars.ContextVar("cnnx_lax_only", default=False)
_PORTABLE_ONLY = contextvars.ContextVar("cnnx_portable_only", default=False)


@contextlib.contextmanager
def _on(switch: contextvars.ContextVar):
    token = switch.set(True)
    try:
        yield
    finally:
        switch.reset(token)


def lax_only():
    """Within it, every convolution traces as a `lax.conv_general_dilated` equation.

    For the analysis tools, which read layers from a jaxpr's convolution equations (shapes,
    FLOPs, receptive fields, input coverage): the numbers are the same, only the formulation
    differs (no library call such as oneDNN's, no shifted depthwise multiply-adds). A custom
    gradient around a convolution equation may remain.
    """
    return _on(_LAX_ONLY)


def lax_only_active() -> bool:
    """Whether the current trace is inside `lax_only()`."""
    return _LAX_ONLY.get()


def portable_only():
    """Within it, every layer takes the portable routes (plain `lax` / `flax.linen`), whatever
    the platform and the `CNNX_*` switches: no library call (oneDNN's) and no platform-specific
    formulation in a program meant for any platform (`jax.export` artefacts)."""
    return _on(_PORTABLE_ONLY)


def portable_only_active() -> bool:
    """Whether the current trace is inside `portable_only()`."""
    return _PORTABLE_ONLY.get()
