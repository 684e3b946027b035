"""Parameter/activation bytes, compiled memory, and that the speed tool returns numbers."""

import pytest

from cnnx import models
from cnnx.analysis import benchmark, memory
from cnnx.analysis.speed import throughput
from cnnx.analysis.trace import trace
from cnnx.config_schema import base_config
from cnnx.parallel.mesh import make_mesh
from cnnx.train import build, steps
from cnnx.train.experiment import setup
from tests.train.tiny import tiny_config


@pytest.fixture
def built_steps(monkeypatch):
    """The (options, jitted function) of every train step built while the test runs."""
    made = []
    real = steps.make_train_step

    def recording(**kwargs):
        fn = real(**kwargs)
        made.append((kwargs["options"], fn))
        return fn

    monkeypatch.setattr(steps, "make_train_step", recording)
    return made


def _is_the_trainers(built) -> bool:
    """Built by `make_train_step` around `steps.train_step` with the schema's options."""
    options, fn = built
    schema = steps.StepOptions.from_config(base_config().train)
    return options == schema and fn.__wrapped__.func is steps.train_step


def test_param_and_activation_bytes():
    tr = trace(models.create("lenet5"), (2, 32, 32, 1))
    assert memory.param_bytes(tr.params) == 60_850 * 4
    # Row outputs, float32, batch 2: c1 6×28×28, s2 6×14×14, c3 16×10×10, s4 16×5×5,
    # c5 120, f6 84, output 10.
    per_image = 6 * 28 * 28 + 6 * 14 * 14 + 16 * 100 + 16 * 25 + 120 + 84 + 10
    assert memory.activation_bytes(tr) == 2 * 4 * per_image


def test_compiled_memory_lenet5(built_steps):
    m = memory.compiled_memory(models.create("lenet5"), (4, 32, 32, 1), 10)
    assert set(m) == {"inference", "train"}
    params = 60_850 * 4
    assert m["inference"].argument >= params + 4 * 32 * 32 * 4
    # The trainer's state: parameters and SGD momentum in, updated out (donated: aliased).
    assert m["train"].argument >= 2 * params and m["train"].output >= 2 * params
    assert m["train"].peak > m["inference"].peak > 0
    assert len(built_steps) == 1 and _is_the_trainers(built_steps[0])


def test_speed_returns_positive_numbers(built_steps):
    s = throughput(models.create("lenet5"), (2, 32, 32, 1), 10, warmup=1, repeats=2)
    assert s.inference_ips > 0 and s.train_ips > 0
    assert s.inference_compile_s > 0 and s.train_compile_s > 0
    assert len(built_steps) == 1 and _is_the_trainers(built_steps[0])


def test_benchmark_and_memory_report_time_the_trainers_step(built_steps):
    model = models.create("lenet5")
    state, step, *_ = benchmark._train_setup(model, (2, 32, 32, 1), 10)
    assert int(state.step) == 0 and step is built_steps[-1][1]
    figures, state_bytes = memory.sharded_train_memory(model, (2, 32, 32, 1), 10, make_mesh(1))
    assert figures.peak > 0 and state_bytes >= 2 * 60_850 * 4
    # ... and training builds its step the same way, with its config's options.
    config = tiny_config()
    exp = setup(config)
    build.experiment_train_step(exp, lambda _: 0.1, None)
    assert len(built_steps) == 3 and all(_is_the_trainers(b) for b in built_steps[:2])
    options, fn = built_steps[2]
    assert options == steps.StepOptions.from_config(config.train)
    assert fn.__wrapped__.func is steps.train_step
