"""Logging set-up for the entry points: keep our metrics, quiet the libraries' chatter."""

import logging as std_logging

from absl import logging

_QUIET = ("orbax", "tensorstore", "etils", "jax/_src/", "tensorflow_datasets")


class _QuietLibraries(std_logging.Filter):
    """Drops INFO records from libraries that log every checkpoint operation."""

    def filter(self, record):
        if record.levelno >= std_logging.WARNING:
            return True
        return not any(q in record.pathname for q in _QUIET)


def configure() -> None:
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
        handler.addFilter(_QuietLibraries())
    logging.set_verbosity(logging.INFO)
