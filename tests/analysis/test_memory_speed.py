"""Parameter/activation bytes, compiled memory, and that the speed tool returns numbers."""

from cnnx import models
from cnnx.analysis import memory
from cnnx.analysis.speed import throughput
from cnnx.analysis.trace import trace


def test_param_and_activation_bytes():
    tr = trace(models.create("lenet5"), (2, 32, 32, 1))
    assert memory.param_bytes(tr.params) == 60_850 * 4
    # Row outputs, float32, batch 2: c1 6×28×28, s2 6×14×14, c3 16×10×10, s4 16×5×5,
    # c5 120, f6 84, output 10.
    per_image = 6 * 28 * 28 + 6 * 14 * 14 + 16 * 100 + 16 * 25 + 120 + 84 + 10
    assert memory.activation_bytes(tr) == 2 * 4 * per_image


def test_compiled_memory_lenet5():
    m = memory.compiled_memory(models.create("lenet5"), (4, 32, 32, 1), 10)
    assert set(m) == {"inference", "train"}
    params = 60_850 * 4
    assert m["inference"].argument >= params + 4 * 32 * 32 * 4
    assert m["train"].output >= params  # the updated parameters
    assert m["train"].peak > m["inference"].peak > 0


def test_speed_returns_positive_numbers():
    s = throughput(models.create("lenet5"), (2, 32, 32, 1), 10, warmup=1, repeats=2)
    assert s.inference_ips > 0 and s.train_ips > 0
    assert s.inference_compile_s > 0 and s.train_compile_s > 0
