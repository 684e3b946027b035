"""Logging set-up for the entry points: keep our metrics, quiet the libraries' chatter."""

import logging as std_logging
import os

from absl import logging

_QUIET = ("orbax", "tensorstore", "etils", "jax/_src/", "tensorflow_datasets")


class _QuietLibraries(std_logging.Filter):
    """Drops INFO records from libraries that log every checkpoint operation, and the
    tracebacks of orbax's errors.

    A failed save (a full disk) made orbax log the same exception from four threads with its
    traceback, 350-420 lines before cnnx's own `error:` line, which says what failed and what
    to do (`cnnx.train.checkpoint`). Each of orbax's error records keeps its line, with the
    innermost cause instead of the traceback.
    """

    def filter(self, record):
        if record.levelno >= std_logging.WARNING:
            if record.exc_info and f"{os.sep}orbax{os.sep}" in record.pathname:
                error = record.exc_info[1]
                while error is not None and error.__cause__ is not None:
                    error = error.__cause__
                cause = " ".join(str(error).split())[:300]
                record.msg = f"{record.getMessage()} [{type(error).__name__}: {cause}]"
                record.args, record.exc_info, record.exc_text = (), None, None
            return True
        return not any(q in record.pathname for q in _QUIET)


def configure() -> None:
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
        handler.addFilter(_QuietLibraries())
    logging.set_verbosity(logging.INFO)
