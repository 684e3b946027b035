"""Trial records readable without Optuna: a JSON Lines export and a forgiving reader.

The study (Optuna storage) is the record of which trials ran; each finished trial's outcome is
stored on its Optuna trial (user attribute 'record') and in its own folder
(`trials/<name>/trial_result.json`). `export` rewrites `<workdir>/trials.jsonl` — one JSON
object per trial, sorted by index — atomically from the study's records, so the table and the
plots can be rebuilt (`scripts/summarize.py`-style tools, pandas, jq) with no Optuna and no
database at hand. All paths go through etils.epath, so gs:// sweep workdirs work.

`read_records` skips lines that do not parse (a file copied while being written, a hand edit)
with a warning rather than failing the whole summary.
"""

import json
from collections.abc import Iterable

from absl import logging
from etils import epath

from cnnx.train.workdir import write_text_atomic

EXPORT = "trials.jsonl"


def export_path(workdir: str) -> str:
    """The JSON Lines export of a sweep workdir."""
    return str(epath.Path(workdir) / EXPORT)


def write_records(path: str, records: Iterable[dict]) -> None:
    """Writes `records` as JSON Lines, replacing the file atomically (readers never see half).

    Args:
      path: local or gs:// file.
      records: JSON-serialisable dicts (other values are written with `str`).

    Raises:
      ValueError: a record does not serialise to one line.
    """
    lines = []
    for record in records:
        line = json.dumps(record, sort_keys=True, default=str)
        if "\n" in line:
            raise ValueError("a record must serialise to a single line")
        lines.append(line + "\n")
    epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(lines))


def read_records(path: str) -> list[dict]:
    """The records of a JSON Lines file ([] when absent); unparsable lines are skipped, logged."""
    p = epath.Path(path)
    if not p.exists():
        return []
    records = []
    for n, raw in enumerate(p.read_bytes().splitlines(), start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            record = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError):
            logging.warning("%s:%d: skipping a line that is not JSON", path, n)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def read_all(workdir: str) -> list[dict]:
    """The records of a sweep workdir's export ([] before any trial finished)."""
    return read_records(export_path(workdir))


def latest_by_key(records: Iterable[dict]) -> dict[str, dict]:
    """The last record of each trial key (a re-run trial supersedes its earlier record)."""
    latest = {}
    for r in records:
        if "key" in r:
            latest[r["key"]] = r
    return latest
