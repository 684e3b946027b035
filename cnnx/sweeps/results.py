"""Crash-safe trial results: append-only JSON Lines, one file per shard, a forgiving reader.

Each finished trial appends one line (a JSON object) and fsyncs the file before the driver moves
on, so a result once reported is on disk. A crash (SIGKILL, power loss) can only tear the line
being written; `read_records` skips a line that does not parse (in practice the last one) and the
next append first ends such a torn line with a newline, so later records are never glued to it.
Every shard of a sweep writes its own file (`results.shard-<i>-of-<n>.jsonl`) and no two
processes ever append to the same file; readers merge all shards.
"""

import glob
import json
import os
from collections.abc import Iterable

from absl import logging

from cnnx.train.workdir import write_json_atomic  # noqa: F401  (summaries, tables)

PATTERN = "results*.jsonl"


def shard_path(workdir: str, shard: int = 0, num_shards: int = 1) -> str:
    """The results file written by one shard of a sweep (`results.jsonl` when unsharded)."""
    if num_shards == 1:
        return os.path.join(workdir, "results.jsonl")
    return os.path.join(workdir, f"results.shard-{shard}-of-{num_shards}.jsonl")


def append_record(path: str, record: dict) -> None:
    """Appends one record as a JSON line and makes it durable (fsync of file and directory).

    Args:
      path: the shard's results file (created if absent).
      record: a JSON-serialisable dict (non-JSON values are written with `str`).
    """
    line = json.dumps(record, sort_keys=True, default=str)
    if "\n" in line:
        raise ValueError("a record must serialise to a single line")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    new = not os.path.exists(path)
    with open(path, "ab+") as f:
        # A torn last line (crash mid-write) gets its newline now, so this record stays whole.
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write(line.encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    if new:  # the file's directory entry must be durable too
        _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_records(path: str) -> list[dict]:
    """The records of one results file, skipping lines torn by a crash (logged, not fatal)."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except (json.JSONDecodeError, UnicodeDecodeError):
                logging.warning("%s:%d: skipping a torn/corrupt line (crash mid-write)", path, n)
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def read_all(workdir: str) -> list[dict]:
    """Records of every shard file in `workdir`, in file-name then line order."""
    records = []
    for path in sorted(glob.glob(os.path.join(workdir, PATTERN))):
        records.extend(read_records(path))
    return records


def latest_by_key(records: Iterable[dict]) -> dict[str, dict]:
    """The last record of each trial key (a re-run trial supersedes its earlier record)."""
    latest = {}
    for r in records:
        if "key" in r:
            latest[r["key"]] = r
    return latest
