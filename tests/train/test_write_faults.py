"""The first writes of a run that fail are one `error:` line (issue 33 item 7): the workdir's
lock on a folder this process cannot write, the TensorBoard event file on a full disk, and a
Cloud Storage endpoint that cannot be reached."""

import errno
import os
import socket
import time

import pytest

from cnnx.errors import WorkdirError
from cnnx.train import event_files
from cnnx.train import workdir as wd
from cnnx.train.loop import train_and_evaluate
from tests.gcs import gcs  # noqa: F401
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


def test_an_unreachable_cloud_storage_endpoint_is_one_error_at_once(monkeypatch):
    # gcsfs retried for 67 s, then a 159-line aiohttp traceback naming no endpoint.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("TENSORSTORE_GCS_HTTP_URL", raising=False)
    start = time.time()
    with pytest.raises(WorkdirError, match=rf"Cannot reach Cloud Storage at 127.0.0.1:{port} "):
        wd.check_folder("gs://bucket/run")
    assert time.time() - start < 10


def test_a_reachable_cloud_storage_endpoint_passes(gcs):  # noqa: F811
    wd.check_folder(gcs.folder("reachable"))  # the emulator of tests/gcs.py
