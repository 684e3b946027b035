"""The oneDNN extension is loaded only if it is the library that was built (issue 33 items 6,
7): a truncated one crashed the process with SIGBUS at load, another library under its name
raised AttributeError; and `CNNX_ONEDNN=on` without it is one `error:` line, not a traceback."""

import shutil
from pathlib import Path

import pytest

from cnnx import cli
from cnnx.backends.cpu import onednn
from cnnx.errors import ConfigError
from tests.train.tiny import tiny_config


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A fresh build in a temporary folder (the real `build`, a few seconds)."""
    if onednn.library_path() is None or shutil.which("g++") is None:
        pytest.skip("oneDNN or a C++ compiler is not installed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(onednn, "BUILD_DIR", tmp_path_factory.mktemp("onednn"))
        yield onednn.build(quiet=True)


def _status(monkeypatch, path) -> tuple[object, str]:
    monkeypatch.setattr(onednn, "library_path", lambda: path)
    onednn._load.cache_clear()
    try:
        return onednn._load()
    finally:
        onednn._load.cache_clear()


def test_a_library_that_is_not_the_one_built_is_not_loaded(built, monkeypatch, tmp_path):
    assert onednn._mismatch(built) is None
    truncated = tmp_path / built.name
    truncated.write_bytes(built.read_bytes()[:4096])
    shutil.copy(onednn._record_path(built), onednn._record_path(truncated))
    lib, why = _status(monkeypatch, truncated)  # loading it: SIGBUS
    assert lib is None and "truncated?); rebuild it: `python -m cnnx" in why
    foreign = shutil.which("true")  # any other file under the library's name
    truncated.write_bytes(Path(foreign).read_bytes() + bytes(built.stat().st_size))
    lib, why = _status(monkeypatch, truncated)
    assert lib is None and "replaced by another file?" in why
    onednn._record_path(truncated).unlink()
    lib, why = _status(monkeypatch, truncated)
    assert lib is None and "has no build record" in why


def test_on_without_the_library_is_one_error_line(monkeypatch, tmp_path, capsys):
    assert issubclass(onednn.OneDNNUnavailable, ConfigError)
    monkeypatch.setattr(onednn, "_load", lambda: (None, "the oneDNN extension is not built"))
    monkeypatch.setenv(onednn.SWITCH, "on")
    assert cli.run_training(tiny_config(), str(tmp_path / "run")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: CNNX_ONEDNN=on, but the oneDNN extension is not built")
