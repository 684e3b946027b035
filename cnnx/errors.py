"""Errors that reach the user.

Everything raised on purpose by cnnx for bad input derives from `CnnxError`; the command-line
entry points print its message (which always says what to do) and exit without a traceback.
"""


class CnnxError(Exception):
    """Base class of the errors cnnx raises on purpose, with a message for the user."""


class ConfigError(CnnxError, ValueError):
    """A configuration value, model name or override is invalid."""


class DataError(CnnxError):
    """A dataset is missing, unreadable, or does not fit the configuration."""


class MissingDependency(CnnxError):
    """A package that the asked-for feature needs is not installed (e.g. TensorFlow for TFDS
    and image folders); the message names what to install."""


class CheckpointError(CnnxError):
    """A checkpoint cannot be saved or restored (missing, corrupt, or of another model)."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint is intact but its arrays do not fit the model/config asking for it."""


class CheckpointDamaged(CheckpointError):
    """A checkpoint step is incomplete, unreadable or fails its checksums (not a config fault)."""


class TrainingDiverged(CnnxError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


class WorkdirError(CnnxError):
    """A workdir or output path cannot be used: it holds another run, is in use by another
    process, is a file where a folder belongs, or cannot be written (read-only, disk full)."""


class StorageError(CnnxError):
    """A sweep's study storage (journal file or database) cannot be reached or read: the
    message names it, what was found (a damaged journal line: its byte offset) and the repair."""


class OutOfMemory(CnnxError, MemoryError):
    """The host ran out of memory for something cnnx can name (the input pipeline's
    preprocessing): not a fault of the data's files; the message says what to lower."""
