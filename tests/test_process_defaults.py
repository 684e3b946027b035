"""What the entry points set in their process, and TensorFlow imported only where it is used."""

import sys

import pytest

from cnnx import process_defaults
from cnnx.errors import MissingDependency


def test_defaults_keep_the_users_values():
    env = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    process_defaults.apply(env)
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "0" and env["EPATH_USE_TF"] == "false"


def test_import_tensorflow_hides_the_accelerators():
    tf = process_defaults.import_tensorflow("a test")
    assert tf.config.get_visible_devices("GPU") == []


def test_import_tensorflow_without_it_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` fails
    process_defaults._tensorflow_on_the_host.cache_clear()
    try:
        with pytest.raises(MissingDependency) as e:
            process_defaults.import_tensorflow("--config.data.source=tfds:cifar10")
    finally:
        process_defaults._tensorflow_on_the_host.cache_clear()
    message = str(e.value)
    assert message.startswith("--config.data.source=tfds:cifar10 reads data with TensorFlow")
    assert "pip install 'cnnx[tfdata]'" in message and "requirements.txt" in message


def test_import_tensorflow_datasets_without_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(MissingDependency) as e:
        process_defaults.import_tensorflow("--config.data.source=tfds:mnist", datasets=True)
    message = str(e.value)
    assert "needs" not in message and "TensorFlow and TensorFlow Datasets" in message
    assert "tfds:mnist" in message and "pip install tensorflow-cpu tensorflow-datasets" in message
    assert process_defaults.import_tensorflow("a test").__name__ == "tensorflow"
