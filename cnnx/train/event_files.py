"""TensorBoard event files written without TensorFlow: scalars and hyperparameters.

TensorBoard reads `events.out.tfevents.*` files: `Event` protocol buffers in TFRecord framing.
`EventWriter` writes them with the `tensorboard` package's own protos, plugin metadata and
record framing, which need no TensorFlow, in the form TF2's summary writer (clu's
`SummaryWriter`, cnnx's writer before) gives them: a scalar is a float32 tensor with the
'scalars' plugin's metadata under its tag (`train/loss`); hyperparameters are the HParams
plugin's `_hparams_/session_start_info` summary at step 0 (`hparams_pb`, what
`tensorboard.plugins.hparams.api.hparams` writes through TensorFlow).

Writes are synchronous (each call appends its records to the file and closes it), so a failed
write (a full disk) raises OSError in the caller, and TensorBoard sees every logged step at
once.
`MirroredWriter` carries the files of a local folder into a gs:// one.
"""

import itertools
import os
import shutil
import socket
import time
from collections.abc import Mapping

import numpy as np
from etils import epath
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util

# What marks a summary value as a scalar (as TF2's `tf.summary.scalar` writes it).
_SCALAR_METADATA = scalar_metadata.create_summary_metadata(display_name=None, description=None)
# Distinct file names for the writers of one process (a resumed run writes a second file).
_FILE_NUMBERS = itertools.count(1)


class EventWriter:
    """Writes one new event file into a local folder (made if missing).

    Args:
      logdir: the folder (a local path; see `MirroredWriter` for gs://).
    """

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
        self.path = os.path.join(logdir, f"{name}{os.getpid()}.{next(_FILE_NUMBERS)}")
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: event_pb2.Event) -> None:
        # Opened for each write, so no file is left open (nothing to flush or close).
        with open(self.path, "ab") as f:
            RecordWriter(f).write(event.SerializeToString())

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """One float32 scalar per tag at `step`."""
        summary = summary_pb2.Summary()
        for tag, value in scalars.items():
            summary.value.add(
                tag=tag,
                tensor=tensor_util.make_tensor_proto(np.float32(value)),
                metadata=_SCALAR_METADATA,
            )
        self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def write_hparams(self, hparams: Mapping[str, bool | int | float | str]) -> None:
        """The run's hyperparameters for TensorBoard's HParams tab (values: bool, number, str)."""
        summary = hparams_summary.hparams_pb(dict(hparams))
        self._write(event_pb2.Event(wall_time=time.time(), step=0, summary=summary))

    def flush(self) -> None:
        """Nothing to do: each write reached the file."""

    def close(self) -> None:
        """Nothing to do: no file is held open."""


class MirroredWriter:
    """An `EventWriter` into a local folder whose files are copied into a gs:// folder: at each
    flush and close, and after a write when `every_secs` passed since the last copy.

    A file is copied whole when its size changed: an object cannot be appended to (TensorFlow's
    own GCS writer uploads the whole file again at each flush too). The local folder is
    removed on close.

    Args:
      local: the local folder the events are written into.
      remote: the gs:// folder they are copied into.
      every_secs: the longest time written events wait for a copy.
    """

    def __init__(self, local: str, remote: str, every_secs: float = 120.0):
        self.inner = EventWriter(local)
        self.local, self.remote, self.every_secs = local, remote, every_secs
        self._copied: dict[str, int] = {}
        self._last = time.monotonic()

    def _sync(self) -> None:
        self._last = time.monotonic()
        for root, _, files in os.walk(self.local):
            for name in files:
                source = os.path.join(root, name)
                size = os.path.getsize(source)
                if self._copied.get(source) == size:
                    continue
                target = epath.Path(self.remote) / os.path.relpath(source, self.local)
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(source, "rb") as f:
                    target.write_bytes(f.read())
                self._copied[source] = size

    def _written(self) -> None:
        if time.monotonic() - self._last >= self.every_secs:
            self._sync()

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self.inner.write_scalars(step, scalars)
        self._written()

    def write_hparams(self, hparams: Mapping[str, bool | int | float | str]) -> None:
        self.inner.write_hparams(hparams)
        self._written()

    def flush(self) -> None:
        self.inner.flush()
        self._sync()

    def close(self) -> None:
        try:
            self.inner.close()
            self._sync()
        finally:
            shutil.rmtree(self.local, ignore_errors=True)


class NoWriter:
    """Writes nothing: the event writer of processes other than 0."""

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        del step, scalars

    def write_hparams(self, hparams: Mapping[str, bool | int | float | str]) -> None:
        del hparams

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
