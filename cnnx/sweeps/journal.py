"""The study's journal file: a damaged line named with its byte offset, a torn last line cut.

Optuna's journal storage (`JournalFileBackend`) is an append-only file of JSON lines. A crash
or a full disk during an append leaves a line without its newline; Optuna never reads such a
last line, but the next append glues itself to it, and then replaying the journal fails with a
bare `JSONDecodeError` in every worker. `journal_file_class` cuts a torn last line before each
append (under the journal's lock, so nobody else is writing) and turns a damaged line that
other lines follow into a `StorageError` naming the line, its byte offset and the repair.
"""

import json
import os

from absl import logging

from cnnx.errors import StorageError


def journal_damage(path: str) -> tuple[int, int, str] | None:
    """(line number, byte offset, excerpt) of the first damaged line of a journal file, or None.

    A last line without its newline is not damage: Optuna never reads it, and
    `journal_file_class` cuts it before the next append.
    """
    offset = 0
    with open(path, "rb") as f:
        lines = f.readlines()
    for n, line in enumerate(lines, start=1):
        last = n == len(lines)
        if not line.endswith(b"\n"):
            return None if last else (n, offset, line[:60].decode(errors="replace"))
        try:
            json.loads(line)
        except ValueError:
            return n, offset, line[:60].decode(errors="replace")
        offset += len(line)
    return None


def damaged_journal_message(path: str) -> str:
    """What is wrong with a journal file that Optuna cannot replay, and how to repair it."""
    found = journal_damage(path)
    if found is None:
        return f"{path} could not be replayed by Optuna, yet every line of it is a JSON record."
    n, offset, text = found
    return (
        f"{path}: line {n} (byte offset {offset}) is not a journal record ({text!r}): an append "
        "that a crash or a full disk cut short, or an edit. Keep a copy and cut the journal "
        f"there: `cp {path} {path}.bak && truncate -s {offset} {path}`. The operations after "
        "it are dropped with it; their trials run again (finished ones resume from their "
        "folders' final checkpoints). `--summarize_only` still summarises the last trials.jsonl."
    )


def journal_file_class():
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal._file import get_lock_file

    class _JournalFile(JournalFileBackend):
        """Optuna's journal file, which names a damaged line and drops a torn last one."""

        def read_logs(self, log_number_from: int):
            try:
                yield from super().read_logs(log_number_from)
            except ValueError:  # json.JSONDecodeError, or Optuna's 'Invalid log format.'
                raise StorageError(damaged_journal_message(self._file_path)) from None

        def append_logs(self, logs: list[dict]) -> None:
            text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
            with get_lock_file(self._lock):
                _cut_torn_tail(self._file_path)
                with open(self._file_path, "ab") as f:
                    f.write(text.encode("utf-8"))
                    f.flush()
                    os.fsync(f.fileno())

    return _JournalFile


def _cut_torn_tail(path: str) -> None:
    """Cuts a last line without its newline (under the journal's lock: nobody else writes).

    It is an append that a crash or a full disk interrupted: Optuna never reads a line without
    its newline, so the operation never took effect; the next append would glue itself to it
    and damage both.
    """
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        start = max(0, size - (1 << 20))  # journal lines are short: the last MiB holds it
        f.seek(start)
        tail = f.read()
        keep = start + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
        f.truncate(keep)
    logging.warning(
        "%s: cut a torn last line (%d bytes at byte offset %d): an append that a crash or a "
        "full disk interrupted, which never took effect.",
        path,
        size - keep,
        keep,
    )
