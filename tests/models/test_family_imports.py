"""Model families do not import each other: shared pieces live in layers/ or private modules."""

import ast
import pathlib

import cnnx.models

MODELS = pathlib.Path(cnnx.models.__file__).parent
SHARED = cnnx.models.SHARED_MODULES  # and private `_*` modules


def _cnnx_models_imports(path: pathlib.Path) -> set[str]:
    """Modules of cnnx.models that `path` imports (at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["cnnx", "models"] and len(parts) > 2:
                found.add(parts[2])
    return found


def _families() -> list[str]:
    return sorted(
        p.stem for p in MODELS.glob("*.py") if p.stem not in SHARED and not p.stem.startswith("_")
    )


def test_no_imports_between_model_families():
    families = set(_families())
    assert {"alexnet", "zfnet", "vgg", "googlenet", "inception_v3", "inception_v4"} <= families
    offenders = {}
    for path in MODELS.glob("*.py"):
        if path.stem == "__init__":
            continue
        crossed = _cnnx_models_imports(path) & (families - {path.stem})
        if crossed:
            offenders[path.name] = sorted(crossed)
    assert not offenders, f"model modules importing a family module: {offenders}"


def test_the_check_sees_an_import_between_families(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from cnnx.models.alexnet import AlexNet\nimport cnnx.models.vgg\n")
    assert _cnnx_models_imports(bad) == {"alexnet", "vgg"}
