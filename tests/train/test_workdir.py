"""The workdir module: a run's identity (config.json), atomic writes (the lock: test_lock.py)."""

import json
import os

import pytest

from cnnx.errors import WorkdirError
from cnnx.train import workdir as wd
from tests.train.tiny import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _recipe(path: str, arg: str | None = None):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_recipe", os.path.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg is not None else module.get_config()


def _save(workdir, config):
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))


# --- Identity ----------------------------------------------------------------------------


def test_twins_with_identical_parameter_trees_are_different_runs(tmp_path):
    """resnet20 and plain20 have the same parameter shapes: only the config tells them apart."""
    _save(tmp_path, _recipe("configs/resnet_cifar.py", "20,digits"))
    plain = _recipe("configs/resnet_cifar.py", "20,plain,digits")
    assert wd.config_changes(json.loads((tmp_path / "config.json").read_text()), plain) == {
        "model.name": ("resnet20_cifar", "plain20_cifar")
    }
    with pytest.raises(WorkdirError) as e:
        wd.check_same_run(str(tmp_path), plain)
    text = str(e.value)
    assert 'model.name: "resnet20_cifar" -> "plain20_cifar"' in text
    assert "another --workdir" in text and "--allow_config_change" in text
    # Allowed on purpose: the changes are returned (to be recorded), nothing is raised.
    assert wd.check_same_run(str(tmp_path), plain, allow_change=True) == {
        "model.name": ("resnet20_cifar", "plain20_cifar")
    }


def test_smoke_then_full_default_is_refused_listing_every_key(tmp_path):
    _save(tmp_path, _recipe("configs/default.py", "smoke"))
    with pytest.raises(WorkdirError) as e:
        wd.check_same_run(str(tmp_path), _recipe("configs/default.py"))
    for key in ("train.num_steps: 6 -> null", "train.batch_size: 16 -> 64", "num_epochs"):
        assert key in str(e.value)


def test_identity_free_keys_do_not_make_another_run(tmp_path):
    _save(tmp_path, tiny_config())
    same_run = tiny_config(
        **{
            "train.log_every_steps": 7,
            "train.profile_steps": (2, 1),
            "eval.batch_size": 16,
            "eval.every_steps": 3,
            "ckpt.asynchronous": True,
            "ckpt.max_to_keep": 9,
            "ckpt.every_steps": 2,
            "mesh.data": 8,
            "data.data_dir": "/elsewhere",
            "model.remat": True,
            "train.on_nonfinite": "skip",
        }
    )
    assert wd.check_same_run(str(tmp_path), same_run) == {}
    # Everything else is identity, including what a resume depends on but a shape check misses.
    identity = {
        "seed": 7,
        "train.batch_size": 16,
        "train.num_steps": 20,
        "optim.name": "adamw",
        "schedule.name": "constant",
        "optim.base_lr": 0.1,
        "data.shuffle_buffer": 64,
        "train.label_smoothing": 0.1,
        "model.dropout_rate": 0.1,
    }
    for key, value in identity.items():
        section = key.split(".")
        other = tiny_config(**({key: value} if len(section) == 2 else {}))
        if len(section) == 1:
            other[key] = value
        assert list(wd.config_changes(tiny_config().to_dict(), other)) == [key], key
    # The plateau schedule decides at each evaluation: there eval.every_steps is identity.
    plateau = {"schedule.name": "plateau"}
    _save(tmp_path, tiny_config(**plateau))
    with pytest.raises(WorkdirError, match=r"eval.every_steps: null -> 3"):
        wd.check_same_run(str(tmp_path), tiny_config(**plateau, **{"eval.every_steps": 3}))


def test_keys_added_to_the_schema_later_count_as_their_default(tmp_path):
    saved = json.loads(tiny_config().to_json_best_effort())
    del saved["train"]["grad_accum_steps"]  # a run saved before the key existed
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert wd.check_same_run(str(tmp_path), tiny_config()) == {}
    with pytest.raises(WorkdirError, match=r"train.grad_accum_steps: 1 -> 2"):
        wd.check_same_run(str(tmp_path), tiny_config(**{"train.grad_accum_steps": 2}))


def test_unreadable_config_json_is_named_not_a_traceback(tmp_path):
    (tmp_path / "config.json").write_text('{"model": {"na')
    with pytest.raises(WorkdirError, match=r"config.json is unreadable.*another --workdir"):
        wd.check_same_run(str(tmp_path), tiny_config())
    assert wd.check_same_run(str(tmp_path / "new"), tiny_config()) == {}  # no config: new run


def test_record_config_change_appends_history(tmp_path):
    wd.record_config_change(str(tmp_path), {"seed": (0, 7)}, step=300)
    wd.record_config_change(str(tmp_path), {"train.batch_size": (64, 32)}, step=400)
    lines = [json.loads(x) for x in (tmp_path / "config_history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [300, 400]
    assert lines[0]["changes"] == {"seed": {"old": 0, "new": 7}} and "time" in lines[0]


def test_load_config_fills_new_keys_with_defaults(tmp_path):
    saved = json.loads(tiny_config().to_json_best_effort())
    del saved["train"]["grad_accum_steps"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = wd.load_config(str(tmp_path))
    assert config.train.grad_accum_steps == 1 and config.data.mean == (0.5,)


# --- Files -------------------------------------------------------------------------------


def test_atomic_writes_and_metrics_trim(tmp_path):
    path = str(tmp_path / "results.json")
    wd.write_json_atomic(path, {"x": 1})
    wd.write_json_atomic(path, {"x": 2})
    assert wd.read_json(path) == {"x": 2} and os.listdir(tmp_path) == ["results.json"]
    metrics = tmp_path / "train_metrics.jsonl"
    metrics.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"st')  # torn by a kill
    wd.keep_metrics_until(str(metrics), 2)
    assert metrics.read_text() == '{"step": 1}\n{"step": 2}\n'


def test_a_workdir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(WorkdirError, match="is an existing file, not a folder"):
        wd.check_folder(str(tmp_path / "f"))


def test_write_errors_of_every_layer_are_described():
    import tensorflow as tf

    assert wd.describe_write_error(OSError(28, "No space left on device")) == (
        "No space left on device (errno 28)",
        True,
    )
    tensorstore = ValueError("Failed to write 42 bytes [os_error_code=28] xyz")
    assert wd.describe_write_error(tensorstore) == ("No space left on device (errno 28)", True)
    tf_error = tf.errors.OutOfRangeError(None, None, "/wd/events.out; File too large\n\tFailed")
    assert wd.describe_write_error(tf_error) == ("File too large (errno 27)", True)
    assert wd.describe_write_error(OSError(13, "Permission denied"))[1] is False
