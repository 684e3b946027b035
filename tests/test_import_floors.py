"""Every part of cnnx sits on one floor: imports point down only, and there is no cycle.

A part is a subpackage (`cnnx/train/`) or a top-level module (`cnnx/cli.py`). The import graph
between parts is read from the source (AST: every import statement, in functions too), so an
import placed inside a function to keep start-up light counts like any other.
"""

import ast
import pathlib

import pytest

CNNX = pathlib.Path(__file__).resolve().parents[1] / "cnnx"

# part -> floor; a part may import only parts on lower floors. A new package or top-level
# module gets a row here, on the floor its imports put it.
FLOORS = {
    "errors": 0,
    "script_flags": 0,
    "image_stats": 0,  # ImageNet / Inception mean and std
    "accuracy": 0,  # top-k, shared by the train step and the evaluators
    "backends": 1,  # the one door to platform kernels, the CNNX_* switches
    "config_schema": 1,  # imports neither TensorFlow nor JAX
    "process_defaults": 2,  # what an entry point sets; the one TensorFlow importer
    "layers": 2,
    "parallel": 2,  # mesh and sharding rules, for trainer and evaluators alike
    "data": 3,  # imports TensorFlow through process_defaults, only where tf.data is read
    "models": 3,  # with the input-coverage check the trainer runs
    "convert": 4,
    "evaluate": 4,  # evaluators sit below the trainer (big_vision)
    "train": 5,
    "analysis": 6,  # measures the real step, from above train/
    "cli": 7,  # train.py's driver; logs a distillation step's MACs (analysis)
    "checkpoint_eval": 6,  # eval.py's driver (cli, train.py's, sits one floor up)
    "export": 6,  # weights out and serving artefacts of trained workdirs
    "sweeps": 8,
    "findings": 9,  # the classic experiments, rerun through the trainer and the sweeps
}


def _part(path: pathlib.Path, root: pathlib.Path) -> str | None:
    rel = path.relative_to(root).with_suffix("").parts
    if rel == ("__init__",):
        return None  # the package docstring and version
    return rel[0]


def _imported_parts(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from cnnx import backends` names the part in the alias.
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "cnnx" and len(parts) > 1:
                found.add(parts[1])
    return found


def import_graph(root: pathlib.Path = CNNX) -> dict[str, set[str]]:
    """part -> the other parts it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        part = _part(path, root)
        if part is None:
            continue
        imported = _imported_parts(ast.parse(path.read_text(encoding="utf-8")))
        graph.setdefault(part, set()).update(imported - {part, "__version__"})
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_part_has_a_floor():
    graph = import_graph()
    assert set(graph) == set(FLOORS), "give each new part of cnnx a row in FLOORS"


def test_no_import_cycle():
    assert _cycle(import_graph()) is None


def test_imports_point_down_only():
    upward = [
        f"{src} (floor {FLOORS[src]}) imports {dst} (floor {FLOORS[dst]})"
        for src, dsts in sorted(import_graph().items())
        for dst in sorted(dsts)
        if FLOORS[dst] >= FLOORS[src]
    ]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize(
    "files,cycle",
    [
        ({"a/x.py": "from cnnx.b import y", "b/y.py": "def f():\n    import cnnx.a.x"}, True),
        ({"a/x.py": "from cnnx import b", "b/y.py": "import os"}, False),
    ],
    ids=["in_function_cycle", "down_only"],
)
def test_the_graph_sees_every_import(tmp_path, files, cycle):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path)
    assert graph["a"] == {"b"}
    assert (_cycle(graph) is not None) == cycle
