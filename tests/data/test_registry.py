"""The pp registry (no import cycle, every op module registered), the source table, and the
batched in-memory pipelines (exactly the per-example results, deterministic, resume-exact)."""

import ast
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import cnnx.evaluate.views  # noqa: F401 (registers the view ops)
from cnnx.data import EvalInput, PPContext, TrainInput, get_source
from cnnx.data import pp as pp_lib
from cnnx.data.sources import SOURCES
from cnnx.errors import ConfigError
from tests.data.sections import assert_same_batches, data_section, per_example

ROOT = pathlib.Path(__file__).resolve().parents[2]
GRAY = PPContext(image_size=16, mean=(0.5,), std=(0.5,), channels=1)


def _cnnx_imports(path: pathlib.Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every `from cnnx... import ...` in a file."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnnx"):
            out.append((node.module, [a.name for a in node.names]))
    return out


def test_pp_module_imports_nothing_of_the_data_package():
    # The registry sits below the op modules: loaded on its own (without cnnx.data's
    # __init__, which imports the op modules), it works and registers nothing.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('pp', {str(ROOT / 'cnnx/data/pp.py')!r})\n"
        "pp = importlib.util.module_from_spec(spec); spec.loader.exec_module(pp)\n"
        "assert pp.OPS == {} and callable(pp.build)\n"
        "assert not any(m.startswith('cnnx.data') for m in sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert all(not m.startswith("cnnx.data") for m, _ in _cnnx_imports(ROOT / "cnnx/data/pp.py"))


def test_no_import_cycle_or_private_import_among_data_modules():
    files = [*sorted((ROOT / "cnnx/data").glob("*.py")), ROOT / "cnnx/evaluate/views.py"]
    graph = {}
    for f in files:
        name = "cnnx.evaluate.views" if f.name == "views.py" else f"cnnx.data.{f.stem}"
        edges = set()
        for module, names in _cnnx_imports(f):
            assert not [n for n in names if n.startswith("_")], (f.name, module, names)
            if module == "cnnx.data":  # `from cnnx.data import augment, ...`
                edges |= {f"cnnx.data.{n}" for n in names if (ROOT / f"cnnx/data/{n}.py").exists()}
            elif module.startswith("cnnx.data."):
                edges.add(module)
        graph[name] = edges - {"cnnx.data.__init__"}
    graph.pop("cnnx.data.__init__")

    def reaches(start, goal, seen=()):
        return any(
            n == goal or (n not in seen and reaches(n, goal, (*seen, n)))
            for n in graph.get(start, ())
        )

    assert not [m for m in graph if reaches(m, m)]


def test_ops_of_every_module_are_registered():
    assert pp_lib.load_ops()  # the registry imports the op modules by name
    assert {"decode", "resize", "resize_crop", "random_crop", "flip", "normalize"} <= set(
        pp_lib.OPS
    )
    assert {"color_jitter", "randaugment", "autoaugment", "random_erasing"} <= set(pp_lib.OPS)
    assert {"tencrop", "multiscale", "googlenet"} <= set(pp_lib.OPS)  # cnnx.evaluate.views
    assert set(pp_lib.BATCHED_OPS) <= set(pp_lib.OPS)
    assert pp_lib.has_batched("random_crop(padding=2)|flip|normalize")
    assert not pp_lib.has_batched("inception_crop|flip|normalize")
    with pytest.raises(ConfigError, match="no batched form"):
        pp_lib.build_batched("inception_crop", GRAY)


def test_source_table():
    assert set(SOURCES) == {"digits", "synthetic", "folder", "tfds"}
    assert get_source(data_section("digits:parity")).num_classes == 2
    # Generated data: the section's sizes, else the run's (model resolution, head).
    s = get_source(data_section("synthetic", num_classes=3, image_size=12), num_classes=5)
    assert s.num_classes == 3 and s.images["train"].shape[1:] == (12, 12, 3)
    s = get_source(data_section("synthetic"), image_size=10, num_classes=4)
    assert s.num_classes == 4 and s.images["train"].shape[1:] == (10, 10, 3)
    with pytest.raises(ConfigError, match=r"Unknown data source .imagenet.*tfds:<name>"):
        get_source(data_section("imagenet"))
    with pytest.raises(ConfigError, match="on_corrupt='maybe'"):
        get_source(data_section("folder:/nonexistent", on_corrupt="maybe"))


BATCHED_PPS = [
    "random_crop(padding=2)|flip|normalize",
    "decode|resize|flip|normalize",
    "resize_crop(crop_pct=0.5)|normalize",
    "random_crop(padding=3)",
]


@pytest.mark.parametrize("pp", BATCHED_PPS)
def test_batched_train_input_equals_per_example(pp):
    src = get_source(data_section("digits"))
    args = dict(split="train[:200]", pp=pp, ctx=GRAY, global_batch=16, seed=5, shuffle_buffer=64)
    fast, slow = TrainInput(src, **args), TrainInput(per_example(src), **args)
    assert fast.batched and not slow.batched
    # The end of epoch 0 and the start of epoch 1 (a new shuffle and new draws), after a resume.
    start = fast.steps_per_epoch - 2
    for a, b, _ in zip(fast.iterate(start), slow.iterate(start), range(4), strict=False):
        assert set(a) == set(b) == {"image", "label", "index"}
        for k in a:
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert a["image"].shape == (16, 16, 16, 1)


def test_batched_train_input_processes_take_their_rows():
    src = get_source(data_section("digits"))
    args = dict(split="train", pp=BATCHED_PPS[0], ctx=GRAY, global_batch=16, seed=1)
    whole = next(TrainInput(src, **args).iterate(3))
    parts = [
        next(TrainInput(src, **args, process_index=i, process_count=2).iterate(3)) for i in (0, 1)
    ]
    for k in whole:
        np.testing.assert_array_equal(whole[k], np.concatenate([p[k] for p in parts]))


def test_batched_train_input_is_deterministic_and_resumes_exactly():
    src = get_source(data_section("digits"))
    args = dict(split="train", pp=BATCHED_PPS[0], ctx=GRAY, global_batch=64, seed=2)
    t = TrainInput(src, **args)
    assert t.batched
    run = [b for b, _ in zip(t.iterate(0), range(t.steps_per_epoch + 3), strict=False)]
    again = TrainInput(src, **args).iterate(0)
    resumed = TrainInput(src, **args).iterate(t.steps_per_epoch - 1)
    for step, b in enumerate(run):
        np.testing.assert_array_equal(b["image"], next(again)["image"])
        if step >= t.steps_per_epoch - 1:
            np.testing.assert_array_equal(b["image"], next(resumed)["image"])
    lo, hi = (0 - 0.5) / 0.5, (1 - 0.5) / 0.5
    assert lo <= run[0]["image"].min() and run[0]["image"].max() <= hi
    other = next(TrainInput(src, **{**args, "seed": 3}).iterate(0))
    assert not np.array_equal(other["image"], run[0]["image"])


@pytest.mark.parametrize("process_count", [1, 2])
def test_batched_eval_input_equals_per_example(process_count):
    src = get_source(data_section("digits"))
    args = dict(split="test[:45]", pp="resize_crop|normalize", ctx=GRAY, global_batch=8)
    for i in range(process_count):
        kw = dict(process_index=i, process_count=process_count)
        fast, slow = EvalInput(src, **args, **kw), EvalInput(per_example(src), **args, **kw)
        assert fast.batched and not slow.batched and fast.num_batches == slow.num_batches
        got, want = list(fast.iterate()), list(slow.iterate())
        assert len(got) == len(want) == fast.num_batches
        assert_same_batches(got, want)
    # The padding is masked out: over the processes, every example counts once.
    passes = [
        EvalInput(src, **args, process_index=i, process_count=process_count)
        for i in range(process_count)
    ]
    assert sum(b["mask"].sum() for e in passes for b in e.iterate()) == 45


def test_batched_ops_match_their_per_example_form_on_rgb():
    ctx = PPContext(image_size=20, channels=3)
    images = np.random.RandomState(0).randint(0, 256, (6, 13, 17, 3)).astype(np.uint8)
    seeds = np.stack([np.full(6, 9), np.arange(6)], 1).astype(np.int64)
    for pp in ("resize_crop|normalize", "random_crop(padding=4)|flip", "decode|resize"):
        batch = pp_lib.build_batched(pp, ctx)({"image": tf.constant(images), "seed": seeds})
        one = pp_lib.build(pp, ctx)
        want = [one({"image": tf.constant(x), "seed": s})["image"] for x, s in zip(images, seeds)]
        np.testing.assert_array_equal(batch["image"], np.stack(want), err_msg=pp)


def test_batched_eval_input_with_an_empty_process_share():
    src = get_source(data_section("digits"))
    args = dict(split="test[:1]", pp="resize|normalize", ctx=GRAY, global_batch=4, process_count=2)
    first, second = EvalInput(src, **args, process_index=0), EvalInput(src, **args, process_index=1)
    assert first.batched and second.batched  # the empty share pads in NumPy too
    masks = [b["mask"].sum() for e in (first, second) for b in e.iterate()]
    assert sum(masks) == 1
    # The padding of the empty share is the per-example path's.
    want = EvalInput(per_example(src), **args, process_index=1).iterate()
    assert_same_batches(second.iterate(), want)
