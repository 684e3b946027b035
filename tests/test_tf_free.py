"""cnnx without TensorFlow: what must work in a process where TensorFlow and TFDS are not
installed (issue 26 item 1), and the one error line where they are needed.

Each check runs in a subprocess whose `sitecustomize` hides `tensorflow` and
`tensorflow_datasets` from the import system (`import tensorflow` raises ModuleNotFoundError
and `importlib.util.find_spec` finds nothing, exactly as on a machine without them). Configs,
`--help`, `--print_config`, the models, the train step, the loop, checkpoints, evaluation,
TensorBoard event files and the in-memory sources must work there; TFDS and image folders
must stop at once with one `error:` line naming what to install.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.jax_cache import compilation_cache  # noqa: F401
from tests.jax_cache import env as cache_env
from tests.test_configs import SMOKE_ARGS
from tests.train.test_event_files import HPARAMS, SCALARS, expected_scalars, read

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_HIDE_TENSORFLOW = '''
"""Hides TensorFlow and TFDS from this process, as if they were not installed."""
import importlib.machinery
import sys

_HIDDEN = ("tensorflow", "tensorflow_datasets")


class _PathFinderWithoutTensorFlow(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.split(".")[0] in _HIDDEN:
            return None
        return super().find_spec(fullname, path, target)


sys.meta_path[:] = [
    _PathFinderWithoutTensorFlow if f is importlib.machinery.PathFinder else f
    for f in sys.meta_path
]
'''

# The modules that must import without TensorFlow (and must not import it).
MODULES = (
    "cnnx",
    "cnnx.models",
    "cnnx.train.steps",
    "cnnx.train.loop",
    "cnnx.train.checkpoint",
    "cnnx.train.metrics_log",
    "cnnx.evaluate.classification",
    "cnnx.cli",
)

# One process checks everything that needs no command line; each check's outcome (None, or the
# error's last line) is reported as its own test below. The order matters: the schema first,
# to see that it imports no jax.
_PROBE = """
import glob, importlib, importlib.util, json, sys, traceback
sys.path.insert(0, REPO)
outcome = {}


def check(name):
    def run(fn):
        try:
            fn()
            tf = [m for m in sys.modules if m.startswith("tensorflow")]
            outcome[name] = f"imported {tf[0]}" if tf else None
        except BaseException:
            outcome[name] = traceback.format_exc().strip().splitlines()[-1]
    return run


@check("tensorflow_is_hidden")
def _():
    for name in ("tensorflow", "tensorflow_datasets"):
        assert importlib.util.find_spec(name) is None, name
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        raise AssertionError(f"{name} imported")


@check("schema_without_jax")
def _():
    from cnnx.config_schema import base_config, validate
    validate(base_config())
    assert "jax" not in sys.modules, "the schema imported jax"


for module in MODULES:
    check(f"import {module}")(lambda module=module: importlib.import_module(module))


@check("config_files")
def _():
    loaded, failed = 0, []
    for path in sorted(glob.glob(REPO + "/configs/**/*.py", recursive=True)):
        text = open(path).read()
        if "def get_config(" not in text and "def get_sweep(" not in text:
            continue
        try:
            spec = importlib.util.spec_from_file_location("cfg", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            make = getattr(module, "get_config", None) or module.get_sweep
            make()
            if (arg := SMOKE_ARGS.get(path.rsplit("/", 1)[1])) and "/sweeps/" not in path:
                make(arg)
            loaded += 1
        except Exception as e:
            failed.append(f"{path[len(REPO) + 1:]}: {type(e).__name__}: {e}")
    assert not failed, "; ".join(failed)
    assert loaded >= 16, loaded


@check("train_step_and_checkpoint")
def _():
    import functools
    import jax, numpy as np, optax
    from cnnx import models
    from cnnx.config_schema import base_config
    from cnnx.train import optim, steps
    from cnnx.train.checkpoint import Checkpointer
    from cnnx.train.state import create_train_state

    schedule = optax.constant_schedule(0.1)
    tx = optim.make_optimizer(base_config().optim, schedule)
    state = create_train_state(models.create("lenet5"), tx, jax.random.PRNGKey(0), (1, 32, 32, 1))
    step = jax.jit(functools.partial(
        steps.train_step, num_classes=10, schedule=schedule, options=steps.StepOptions.default()
    ))
    batch = {"image": np.zeros((8, 32, 32, 1), np.float32), "label": np.arange(8) % 10}
    state, metrics = step(state, batch, jax.random.PRNGKey(1))
    assert np.isfinite(float(metrics["loss"])) and int(state.step) == 1
    ckpt = Checkpointer(OUT + "/checkpoints", asynchronous=False)
    ckpt.save(1, state)
    ckpt.close()


@check("tensorboard_files")
def _():
    from cnnx.train.metrics_log import metric_writer
    writer = metric_writer(OUT + "/events")
    for step, scalars in SCALARS.items():
        writer.write_scalars(step, scalars)
    writer.write_hparams(HPARAMS)
    writer.close()


@check("import_tensorflow_names_the_extra")
def _():
    from cnnx.errors import MissingDependency
    from cnnx.process_defaults import import_tensorflow
    try:
        import_tensorflow("--views=tencrop")
    except MissingDependency as e:
        assert "pip install 'cnnx[tfdata]'" in str(e), e
        return
    raise AssertionError("no MissingDependency")


print(json.dumps(outcome))
"""

CHECKS = [
    "tensorflow_is_hidden",
    "schema_without_jax",
    *(f"import {m}" for m in MODULES),
    "config_files",
    "train_step_and_checkpoint",
    "tensorboard_files",
    "import_tensorflow_names_the_extra",
]


@pytest.fixture(scope="module")
def env(tmp_path_factory, compilation_cache):  # noqa: F811
    """The environment of a process without TensorFlow (and this process's other settings)."""
    hide = tmp_path_factory.mktemp("without_tensorflow")
    (hide / "sitecustomize.py").write_text(_HIDE_TENSORFLOW)
    out = {**os.environ, **cache_env(compilation_cache)}
    out["PYTHONPATH"] = os.pathsep.join([str(hide), REPO])
    return out


def run(env, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def probe(env, tmp_path_factory):
    """(the probe's outcome per check, its output folder)."""
    out = tmp_path_factory.mktemp("probe")
    values = {"REPO": REPO, "OUT": str(out), "MODULES": MODULES}
    values.update(SCALARS=SCALARS, HPARAMS=HPARAMS, SMOKE_ARGS=SMOKE_ARGS)
    code = "".join(f"{k} = {v!r}\n" for k, v in values.items()) + _PROBE
    p = run(env, "-c", code)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    return json.loads(p.stdout.strip().splitlines()[-1]), out


@pytest.mark.parametrize("name", CHECKS)
def test_without_tensorflow(probe, name):
    outcome, _ = probe
    assert outcome[name] is None, outcome[name]


def test_tensorboard_reads_what_was_written_without_tensorflow(probe):
    outcome, out = probe
    assert outcome["tensorboard_files"] is None
    assert read(out / "events") == (expected_scalars(), HPARAMS)


@pytest.mark.parametrize(
    "args",
    [
        ["train.py", "--help"],
        ["eval.py", "--help"],
        ["scripts/benchmark.py", "--help"],
        ["train.py", "--config=configs/efficientnet.py:b0", "--print_config"],
    ],
    ids=["train_help", "eval_help", "benchmark_help", "print_config"],
)
def test_entry_points_answer(env, args):
    p = run(env, *args)
    assert p.returncode == 0, p.stderr[-3000:]
    if "--print_config" in args:
        printed = json.loads(p.stdout)
        assert printed["data"]["source"] == "tfds:imagenet2012"  # printed, not read
        assert printed["train"]["loss"] == "softmax_xent"


def test_summarize_a_model(env):
    p = run(env, "scripts/summarize.py", "--model=lenet5", "--image_size=32")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "lenet5" in p.stdout and "60,850" in p.stdout


@pytest.mark.parametrize("source", ["tfds:cifar10", "folder:{tmp}"])
def test_tfds_and_folders_without_tensorflow_are_one_error_line(env, tmp_path, source):
    """Needs the data layer to import TensorFlow through `process_defaults.import_tensorflow`
    (cnnx/data; branch `inmem`)."""
    (tmp_path / "images" / "a").mkdir(parents=True)
    p = run(
        env,
        "train.py",
        "--config=configs/default.py:smoke",
        f"--config.data.source={source.format(tmp=tmp_path / 'images')}",
        f"--workdir={tmp_path / 'run'}",
    )
    assert p.returncode == 2, p.stderr[-3000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pip install 'cnnx[tfdata]'" in errors[0], p.stderr[-3000:]
    assert "Traceback" not in p.stderr


@pytest.mark.slow
def test_train_and_eval_end_to_end(env, tmp_path):
    """train.py (a smoke run on the digits) and eval.py, without TensorFlow: in-memory data,
    steps, checkpoints, evaluation and TensorBoard files. Needs cnnx/data's in-memory
    pipeline without TensorFlow (branch `inmem`)."""
    workdir = tmp_path / "run"
    p = run(env, "train.py", "--config=configs/default.py:smoke", f"--workdir={workdir}")
    assert p.returncode == 0, p.stderr[-5000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["status"] == "completed" and results["eval/examples"] == 359
    assert list(workdir.glob("events.out.tfevents.*"))
    out = tmp_path / "eval.json"
    p = run(env, "eval.py", f"--workdir={workdir}", f"--output={out}")
    assert p.returncode == 0, p.stderr[-5000:]
    assert json.loads(out.read_text())["eval/top1"] == results["eval/top1"]
    # Test-time views are tf.data ops: asking for them names what to install.
    p = run(env, "eval.py", f"--workdir={workdir}", "--views=tencrop", f"--output={out}")
    assert p.returncode == 2 and "pip install 'cnnx[tfdata]'" in p.stderr, p.stderr[-3000:]
