"""Reading the checkpoints of a run that is still writing them (eval.py on a running workdir):
a step that the writer's max_to_keep deletes between the listing and the read is not damage.
The reader lists the steps again and reads the newest one there; a step asked for by number
is said to be deleted; and no error advises moving steps while the workdir's lock is held."""

import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from cnnx.errors import CheckpointDamaged, CheckpointError
from cnnx.train import checkpoint
from cnnx.train import workdir as wd
from cnnx.train.checkpoint import Checkpointer


def _tree(step: int) -> dict:
    return {"w": jnp.full((4, 3), float(step)), "b": jnp.arange(3.0) + step}


@pytest.fixture
def workdir(tmp_path):
    """A workdir with steps 1, 2, 3 saved, and a writer's step 4 ready to appear."""
    writer = Checkpointer(wd.checkpoints_dir(str(tmp_path)), max_to_keep=3, asynchronous=False)
    for step in (1, 2, 3):
        writer.save(step, _tree(step))
    writer.close()
    return str(tmp_path)


def _writer_moves_on(monkeypatch, workdir, deleted, saved=None):
    """Deletes step `deleted` (and copies step 3 as `saved`) just before the reader reads it:
    what a running writer's save and max_to_keep do between a reader's listing and its read."""
    real = Checkpointer._restore_step
    done = []

    def restore_step(self, step, template):
        if step == deleted and not done:
            done.append(step)
            ckpts = wd.checkpoints_dir(workdir)
            if saved is not None:
                shutil.copytree(os.path.join(ckpts, "3"), os.path.join(ckpts, str(saved)))
            shutil.rmtree(os.path.join(ckpts, str(deleted)))
        return real(self, step, template)

    monkeypatch.setattr(Checkpointer, "_restore_step", restore_step)


def _hold_lock(workdir):
    with open(wd.lock_path(workdir), "w") as f:
        json.dump({"host": "elsewhere", "pid": 1}, f)


def test_newest_step_deleted_while_read_reads_the_newest_then_there(workdir, monkeypatch):
    _hold_lock(workdir)
    _writer_moves_on(monkeypatch, workdir, deleted=3, saved=9)
    reader = Checkpointer(wd.checkpoints_dir(workdir), read_only=True)
    restored = reader.restore(None)
    reader.close()
    np.testing.assert_array_equal(restored["b"], np.arange(3.0) + 3)  # step 9 is a copy of 3
    assert sorted(os.listdir(wd.checkpoints_dir(workdir))) == ["1", "2", "9"]  # nothing moved


def test_step_asked_for_and_deleted_while_read_is_named_deleted(workdir, monkeypatch):
    _hold_lock(workdir)
    _writer_moves_on(monkeypatch, workdir, deleted=2)
    reader = Checkpointer(wd.checkpoints_dir(workdir), read_only=True)
    with pytest.raises(CheckpointError, match=r"No checkpoint 2 .*deleted while it was being read"):
        reader.restore(None, step=2)
    reader.close()


def test_no_advice_to_move_steps_while_the_lock_is_held(workdir, monkeypatch):
    _hold_lock(workdir)
    monkeypatch.setattr(checkpoint, "_DELETION_WAITS", 1)

    def damaged(self, step, template):
        raise checkpoint._damaged(step, "unreadable (test)")

    monkeypatch.setattr(Checkpointer, "_restore_step", damaged)
    reader = Checkpointer(wd.checkpoints_dir(workdir), read_only=True)
    with pytest.raises(CheckpointDamaged) as error:
        reader.restore(None)
    reader.close()
    assert "mv " not in str(error.value)
    assert "nothing should be moved while the run holding" in str(error.value)
    os.remove(wd.lock_path(workdir))  # no writer: the advice to move the steps aside is back
    reader = Checkpointer(wd.checkpoints_dir(workdir), read_only=True)
    with pytest.raises(CheckpointDamaged, match="mv "):
        reader.restore(None)
    reader.close()
