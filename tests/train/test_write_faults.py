"""The first writes of a run that fail are one `error:` line (issue 33 item 7): the workdir's
lock on a folder this process cannot write, and the TensorBoard event file on a full disk."""

import errno
import os

import pytest

from cnnx.errors import WorkdirError
from cnnx.train import event_files
from cnnx.train.loop import train_and_evaluate
from tests.train.tiny import tiny_config


def _unwritable() -> str:
    """A folder that even root cannot create: /sys is read-only to everyone (sysfs)."""
    path = "/sys/cnnx_workdir_test"
    try:
        os.mkdir(path)
    except OSError:
        return path
    os.rmdir(path)
    pytest.skip("/sys is writable here")


def test_a_workdir_that_cannot_be_written_is_one_error():
    # The lock's own write raised PermissionError / OSError with a traceback.
    with pytest.raises(WorkdirError, match=r"Cannot write the lock of /sys/cnnx_workdir_test \("):
        train_and_evaluate(tiny_config(), _unwritable())


def test_a_full_disk_when_the_tensorboard_writer_is_created(tmp_path, monkeypatch):
    def full(self, logdir, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(logdir))

    monkeypatch.setattr(event_files.EventWriter, "__init__", full)
    with pytest.raises(WorkdirError, match=r"TensorBoard event file .*No space left on device"):
        train_and_evaluate(tiny_config(), str(tmp_path))
