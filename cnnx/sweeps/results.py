"""Trial records readable without Optuna: a JSON Lines export and a forgiving reader.

The study (Optuna storage) is the record of which trials ran; each finished trial's outcome is
stored on its Optuna trial (user attribute 'record') and in its own folder
(`trials/<name>/trial_result.json`). `export` rewrites `<workdir>/trials.jsonl` — one JSON
object per trial, sorted by index — atomically from the study's records, so the table and the
plots can be rebuilt (`scripts/summarize.py`-style tools, pandas, jq) with no Optuna and no
database at hand. All paths go through etils.epath, so gs:// sweep workdirs work.

`read_records` skips lines that do not parse (a file copied while being written, a hand edit)
with a warning rather than failing the whole summary.

A sweep workdir belongs to one study (`claim_workdir`, `study.json`): a second sweep there
would overwrite the first one's trials.jsonl and summaries, so it is refused.
"""

import json
from collections.abc import Iterable

from absl import logging
from etils import epath

from cnnx.errors import WorkdirError
from cnnx.train.workdir import read_json, write_json_atomic, write_text_atomic

EXPORT = "trials.jsonl"
STUDY_FILE = "study.json"


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


def claim_workdir(workdir: str, study: str, sweep_ref: str, replace: bool = False) -> None:
    """Makes `workdir` the sweep workdir of the study `study` (`<workdir>/study.json`).

    Args:
      workdir: the sweep workdir (local or gs://).
      study: the study's name (`cnnx.sweeps.study.study_name`).
      sweep_ref: the sweep file as given (named in the error).
      replace: hand a workdir of another study to this one (--new_study).

    Raises:
      WorkdirError: the workdir belongs to another study.
    """
    path = str(epath.Path(workdir) / STUDY_FILE)
    mine = {"study": study, "sweep": sweep_ref}
    held = read_json(path)
    if held is not None and held.get("study") != study and not replace:
        raise WorkdirError(
            f"{workdir} holds the study {held.get('study')} (--sweep={held.get('sweep')}); "
            f"--sweep={sweep_ref} is another study (another sweep file, arg, base config or "
            "grid) and would overwrite its trials.jsonl and summaries. Use another --workdir, "
            "or pass --new_study to give this workdir to the new study (unchanged trials reuse "
            "their folders)."
        )
    if held != mine:
        epath.Path(workdir).mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, mine)
