"""cnnx.backends.switches: every CNNX_* variable's values, aliases, default and error."""

import pytest

from cnnx.backends import switches
from cnnx.errors import ConfigError

# switch -> (spelling in the environment, value it means); None: unset.
CASES = {
    "cpu_grads": (
        switches.CPU_GRADS,
        [
            *[(None, "auto"), ("auto", "auto")],
            *[("XLA", "xla"), ("off", "xla"), ("0", "xla")],
            *[("custom", "custom"), ("on", "custom"), ("1", "custom")],
        ],
    ),
    "onednn": (
        switches.ONEDNN,
        [
            *[(None, "auto"), ("on", "on"), ("true", "on"), ("1", "on")],
            *[(" Off ", "off"), ("0", "off"), ("false", "off")],
        ],
    ),
    "xla_defaults": (
        switches.XLA_DEFAULTS,
        [(None, "on"), ("1", "on"), ("true", "on"), ("0", "off"), ("false", "off")],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_aliases_and_default(name):
    switch, spellings = CASES[name]
    for given, meant in spellings:
        environ = {} if given is None else {switch.name: given}
        assert switch.read(environ) == meant, given


@pytest.mark.parametrize("name", sorted(CASES))
def test_unknown_value_names_the_documented_ones(name):
    switch, _ = CASES[name]
    with pytest.raises(ConfigError, match=f"{switch.name}='maybe': expected .*unset means"):
        switch.read({switch.name: "maybe"})


def test_readers_follow_the_environment(monkeypatch):
    monkeypatch.setenv("CNNX_CPU_GRADS", "custom")
    monkeypatch.setenv("CNNX_ONEDNN", "off")
    monkeypatch.setenv("CNNX_COMPILATION_CACHE", "/tmp/cache")
    assert (switches.cpu_grads(), switches.onednn()) == ("custom", "off")
    assert switches.compilation_cache() == "/tmp/cache"
    assert not switches.xla_defaults({"CNNX_XLA_DEFAULTS": "off"})
    monkeypatch.setenv("CNNX_COMPILATION_CACHE", "")
    assert switches.compilation_cache() is None


@pytest.mark.parametrize("name", ["lax_only", "portable_only"])
def test_code_switches_nest_and_reset(name):
    enter, active = getattr(switches, name), getattr(switches, f"{name}_active")
    assert not active()
    with enter():
        with enter():
            assert active()
        assert active()
    assert not active()
