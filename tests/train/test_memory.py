"""A train state that cannot fit the memory is refused before it is created (issue 33 item 6:
`--config.model.width_mult=1000` logged a 450 GB state, then hung at 0% CPU)."""

import time

import pytest

from cnnx.errors import ConfigError
from cnnx.train import memory
from cnnx.train.loop import train_and_evaluate
from tests.train.tiny import tiny_config


def test_a_state_larger_than_the_host_memory_is_refused_at_once(tmp_path):
    assert memory.host_memory_available() > 0  # Linux: MemAvailable (or the cgroup's limit)
    config = tiny_config(**{"model.name": "nin", "model.width_mult": 1000.0, "data.image_size": 40})
    start = time.time()
    with pytest.raises(ConfigError, match=r"The train state of nin .* GB per device, more than"):
        train_and_evaluate(config, str(tmp_path))
    assert time.time() - start < 120
    assert not (tmp_path / "checkpoints").exists()


def test_a_state_that_fits_is_not_refused(tmp_path, monkeypatch):
    from cnnx.train import build

    sizes = []

    def check(abstract, shardings, what):
        sizes.append(memory._bytes_per_device(abstract, shardings))
        memory.check_state_fits(abstract, shardings, what)

    monkeypatch.setattr(build, "check_state_fits", check)
    train_and_evaluate(tiny_config(**{"train.num_steps": 1}), str(tmp_path))
    assert 0 < sizes[0] < 10e6  # LeNet-5's state: a few hundred KB per device
