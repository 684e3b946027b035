"""Every package's `__init__` indexes its modules, so the indices cannot go stale.

Family modules (`cnnx/models/<family>.py` and their converters `cnnx/convert/<family>.py`)
are indexed as a kind ("one module per family"), not by name.
"""

import ast
import pathlib

import pytest

from cnnx.models import SHARED_MODULES

CNNX = pathlib.Path(__file__).resolve().parents[1] / "cnnx"
PACKAGES = sorted(p.parent for p in CNNX.rglob("__init__.py"))
FAMILIES = {
    p.stem
    for p in (CNNX / "models").glob("*.py")
    if not p.stem.startswith("_") and p.stem not in SHARED_MODULES
}


def _modules(package: pathlib.Path) -> list[str]:
    names = [p.stem for p in package.glob("*.py") if not p.stem.startswith("_")]
    names += [p.name for p in package.iterdir() if (p / "__init__.py").is_file()]
    if package.name in ("models", "convert"):
        names = [n for n in names if n not in FAMILIES]
    return sorted(names)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.relative_to(CNNX.parent).as_posix())
def test_the_index_names_every_module(package):
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    words = set(doc.replace("`", " ").replace(",", " ").replace("/", " ").split())
    missing = [name for name in _modules(package) if name not in words]
    assert not missing, f"{package}/__init__.py does not index {missing}"


def test_the_train_index_imports_nothing():
    tree = ast.parse((CNNX / "train" / "__init__.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
