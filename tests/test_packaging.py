"""pyproject's dependencies and extras agree with the pinned requirements files that CI and
`make install` use: every package a user gets from `pip install cnnx[...]` is pinned there, at
a version its lower bound admits."""

from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pinned(name: str) -> dict[str, Requirement]:
    """The requirements of a requirements file (following `-r`), by normalised name."""
    out = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            out.update(_pinned(line[3:].strip()))
        elif line:
            req = Requirement(line)
            out[req.name.lower().replace("_", "-")] = req
    return out


PINNED = _pinned("requirements-dev.txt")


@pytest.mark.parametrize("group", ["core", "tfdata", "onednn", "dev"])
def test_every_dependency_is_pinned_at_an_admitted_version(group):
    deps = PROJECT["dependencies"] if group == "core" else PROJECT["optional-dependencies"][group]
    for text in deps:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        if name == "cnnx":  # dev includes the other extras
            continue
        assert name in PINNED, f"{text} ({group}) is not in requirements*.txt"
        version = str(next(iter(PINNED[name].specifier)).version)
        assert req.specifier.contains(version), f"{name}=={version} does not satisfy {text}"


def test_the_core_has_no_tensorflow():
    names = {Requirement(t).name for t in PROJECT["dependencies"]}
    assert not {n for n in names if n.startswith("tensorflow")}
    tfdata = {Requirement(t).name for t in PROJECT["optional-dependencies"]["tfdata"]}
    assert {"tensorflow-cpu", "tensorflow-datasets"} <= tfdata
