"""The JSON Lines export: written whole (atomically), read back forgivingly, no Optuna needed."""

import json

from cnnx.sweeps.results import export_path, latest_by_key, read_all, read_records, write_records


def test_round_trip_and_latest(tmp_path):
    path = export_path(str(tmp_path))
    write_records(
        path,
        [
            {"key": "a", "status": "failed"},
            {"key": "b", "status": "completed"},
            {"key": "a", "status": "completed"},
        ],
    )
    records = read_records(path)
    assert [r["key"] for r in records] == ["a", "b", "a"]
    assert latest_by_key(records)["a"]["status"] == "completed"
    assert read_all(str(tmp_path)) == records
    write_records(path, records[:1])  # a rewrite replaces the file, leaving no temporary
    assert read_records(path) == records[:1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trials.jsonl"]


def test_garbage_and_blank_lines_and_missing_file(tmp_path):
    path = export_path(str(tmp_path))
    assert read_records(path) == []
    with open(path, "wb") as f:
        f.write(b'{"key": "a", "status": "completed"}\n\n\xff\xfe garbage\n[1, 2]\n')
    assert [r["key"] for r in read_records(path)] == ["a"]


def test_records_are_single_json_lines(tmp_path):
    path = export_path(str(tmp_path))
    write_records(path, [{"key": "a", "error": "two\nlines", "x": {1, 2}}])
    (line,) = (tmp_path / "trials.jsonl").read_text().splitlines()
    assert json.loads(line)["error"] == "two\nlines"
