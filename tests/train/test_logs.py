"""The entry points' logging (cnnx.train.logs): orbax's error records keep their line but not
their traceback (issue 33 item 7: 350-420 lines before a full disk's one `error:` line)."""

import logging
import os
import sys

from cnnx.train.logs import _QuietLibraries


def _record(pathname: str, level=logging.ERROR, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("absl", level, pathname, 1, "save of %s failed", ("8",), exc_info)


def _exc_info():
    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError as e:
            raise ValueError("OUT_OF_RANGE: Error writing ocdbt") from e
    except ValueError:
        return sys.exc_info()


def test_orbax_errors_lose_their_traceback_and_keep_the_cause():
    orbax = os.path.join(os.sep, "site-packages", "orbax", "checkpoint", "future.py")
    record = _record(orbax, exc_info=_exc_info())
    assert _QuietLibraries().filter(record)
    assert record.exc_info is None and "\n" not in logging.Formatter().format(record)
    assert record.getMessage() == "save of 8 failed [OSError: [Errno 28] No space left on device]"


def test_other_errors_keep_their_traceback_and_library_info_is_dropped():
    record = _record(os.path.join("cnnx", "train", "loop.py"), exc_info=_exc_info())
    assert _QuietLibraries().filter(record) and record.exc_info is not None
    orbax = os.path.join(os.sep, "site-packages", "orbax", "checkpoint", "future.py")
    assert not _QuietLibraries().filter(_record(orbax, level=logging.INFO))
