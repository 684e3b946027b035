"""Damaged checkpoints are told apart from a different model, and never restored silently.

The three damages of issue 17 (64 bytes flipped in the newest step's largest file, a file
truncated to 100 bytes, an empty step directory): a reader (eval.py, fine-tuning) stops and
names the intact steps; the training run moves the damaged step aside and resumes from the
newest intact one, ending exactly where an undamaged run ends.
"""

import glob
import json
import os
import shutil
import sys
import types

import jax
import numpy as np
import pytest

from cnnx.checkpoint_eval import restore_state
from cnnx.errors import CheckpointDamaged, CheckpointError, CheckpointMismatch
from cnnx.train import checkpoint, loop
from cnnx.train.checkpoint import load_variables
from tests.jax_cache import compilation_cache  # noqa: F401
from tests.train.tiny import tiny_config

pytestmark = pytest.mark.usefixtures("compilation_cache")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, compilation_cache):  # noqa: F811
    """A finished tiny run (checkpoints 4, 8, 12) and its final parameters."""
    workdir = str(tmp_path_factory.mktemp("trained"))
    loop.train_and_evaluate(tiny_config(), workdir)
    final = load_variables(workdir)["params"]
    return workdir, final


def _copy(trained, tmp_path) -> str:
    workdir = str(tmp_path / "wd")
    shutil.copytree(trained[0], workdir)
    return workdir


def _largest_file(step_dir: str) -> str:
    files = [f for f in glob.glob(f"{step_dir}/**", recursive=True) if os.path.isfile(f)]
    return max(files, key=os.path.getsize)


def _flip_64_bytes(workdir: str, step: int = 12) -> None:
    path = _largest_file(os.path.join(workdir, "checkpoints", str(step)))
    with open(path, "rb") as f:
        data = bytearray(f.read())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    with open(path, "wb") as f:
        f.write(data)


def _truncate(workdir: str, step: int = 12) -> None:
    os.truncate(_largest_file(os.path.join(workdir, "checkpoints", str(step))), 100)


def _empty_999(workdir: str) -> None:
    os.makedirs(os.path.join(workdir, "checkpoints", "999"))


DAMAGES = {
    "flipped_bytes": (_flip_64_bytes, 12, r"checkpoint 12 is corrupt: 1 of 33 arrays differ"),
    "truncated_file": (_truncate, 12, r"checkpoint 12 is unreadable \(.*OUT_OF_RANGE"),
    "empty_step_dir": (_empty_999, 999, r"checkpoint 999 is incomplete \(no _CHECKPOINT_META"),
}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_damaged_newest_step_readers_stop_naming_the_intact_steps(case, trained, tmp_path):
    damage, step, message = DAMAGES[case]
    workdir = _copy(trained, tmp_path)
    damage(workdir)
    intact = "12, 8, 4" if step == 999 else "8, 4"
    for read in (lambda: restore_state(tiny_config(), workdir), lambda: load_variables(workdir)):
        with pytest.raises(CheckpointDamaged, match=message) as e:
            read()
        assert f"The intact steps are {intact}" in str(e.value)
        assert "does not fit" not in str(e.value)  # not blamed on the config
    assert os.path.isdir(os.path.join(workdir, "checkpoints", str(step)))  # readers move nothing
    # An intact step asked for explicitly still restores.
    _, state = restore_state(tiny_config(), workdir, step=8)
    assert int(state.step) == 8


def _interrupted(trained, tmp_path) -> str:
    """A copy of the trained run without its results.json: a run stopped before its end (a
    finished run is not trained again, so it would never restore)."""
    workdir = _copy(trained, tmp_path)
    os.remove(os.path.join(workdir, "results.json"))
    return workdir


@pytest.mark.parametrize("case", list(DAMAGES))
def test_training_sets_a_damaged_step_aside_and_resumes_from_the_intact_one(
    case, trained, tmp_path, caplog
):
    damage, step, _ = DAMAGES[case]
    workdir = _interrupted(trained, tmp_path)
    damage(workdir)
    caplog.set_level("WARNING")
    results = loop.train_and_evaluate(tiny_config(), workdir)
    resumed_from = 12 if step == 999 else 8
    warned = [r.getMessage() for r in caplog.records if "moved it to" in r.getMessage()]
    assert len(warned) == 1 and f"resuming from step {resumed_from}" in warned[0], warned
    assert results["status"] == "completed" and results["step"] == 12
    names = os.listdir(os.path.join(workdir, "checkpoints"))
    assert f"{step}.damaged" in names  # kept for inspection, out of orbax's way
    assert sorted(n for n in names if n.isdigit()) == ["12", "4", "8"]  # 12 saved again
    # Resumed from an intact step, the run ends bit-identical to the undamaged one.
    jax.tree.map(np.testing.assert_array_equal, load_variables(workdir)["params"], trained[1])


def test_every_step_damaged_is_an_error_that_changes_nothing(trained, tmp_path):
    workdir = _interrupted(trained, tmp_path)
    for step in (4, 8, 12):
        _flip_64_bytes(workdir, step)
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    with pytest.raises(CheckpointDamaged, match=r"No intact step is left") as e:
        loop.train_and_evaluate(tiny_config(), workdir)
    assert "does not fit" not in str(e.value) and "checkpoint 4 is corrupt" in str(e.value)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


def test_a_missing_step_lists_the_steps_there(trained):
    with pytest.raises(CheckpointError, match=r"No checkpoint 123 in .*steps there are 12, 8, 4"):
        restore_state(tiny_config(), trained[0], step=123)


def test_checkpoints_without_checksums_restore_unverified_with_one_warning(
    trained, tmp_path, caplog
):
    """Checkpoints written before the checksums existed: the step metadata lacks them."""
    workdir = _copy(trained, tmp_path)
    for path in glob.glob(os.path.join(workdir, "checkpoints", "*", "_CHECKPOINT_METADATA")):
        with open(path) as f:
            metadata = json.load(f)
        metadata["custom_metadata"] = {}
        with open(path, "w") as f:
            json.dump(metadata, f)
    caplog.set_level("WARNING")
    for _ in range(2):
        np.testing.assert_array_equal(
            load_variables(workdir)["params"]["c1"]["kernel"], trained[1]["c1"]["kernel"]
        )
    unverified = [r for r in caplog.records if "restored unverified" in r.getMessage()]
    assert len(unverified) == 1 and "no checksums" in unverified[0].getMessage()


def test_another_model_is_refused_before_any_array_is_read(trained, tmp_path, monkeypatch):
    """The mismatch is found from the saved metadata: no read starts (whose abandoned
    threads would print after the error), and the message names the arrays that differ."""
    config = tiny_config(**{"model.width_mult": 2.0})

    def no_reads(*args, **kwargs):
        raise AssertionError("a restore started for a checkpoint that cannot fit")

    monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "restore", no_reads)
    fits = r"does not fit.*: params.c1.bias is \(6,\) there, \(12,\) here; params.c1.kernel"
    with pytest.raises(CheckpointMismatch, match=fits):
        restore_state(config, trained[0])


def test_abandoned_read_noise_is_dropped_and_nothing_else(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    checkpoint._ignore_abandoned_io()
    checkpoint._ignore_abandoned_io()  # installed once
    noise = types.SimpleNamespace(exc_value=RuntimeError("Event loop is closed"), object=None)
    other = types.SimpleNamespace(exc_value=RuntimeError("something else"), object=None)

    def coroutine_from(filename):
        code = types.SimpleNamespace(co_filename=filename)
        return types.SimpleNamespace(
            exc_value=Exception("read failed"), object=types.SimpleNamespace(cr_code=code)
        )

    # What an abandoned orbax read reports when collected; the same from elsewhere is kept.
    orbax_read = coroutine_from(f"{os.sep}site-packages{os.sep}orbax{os.sep}serialization.py")
    mine = coroutine_from(f"{os.sep}cnnx{os.sep}train{os.sep}loop.py")
    for unraisable in (noise, other, orbax_read, mine):
        sys.unraisablehook(unraisable)
    assert seen == [other, mine]
