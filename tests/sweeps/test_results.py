"""The results file survives crashes: a torn last line is skipped, later appends stay whole."""

import json
import os

from cnnx.sweeps.results import (
    append_record,
    latest_by_key,
    read_all,
    read_records,
    shard_path,
    write_json_atomic,
)


def test_round_trip_and_latest(tmp_path):
    path = shard_path(str(tmp_path))
    append_record(path, {"key": "a", "status": "failed"})
    append_record(path, {"key": "b", "status": "completed", "metrics": {"eval/top1": 90.0}})
    append_record(path, {"key": "a", "status": "completed"})
    records = read_records(path)
    assert [r["key"] for r in records] == ["a", "b", "a"]
    assert latest_by_key(records)["a"]["status"] == "completed"


def test_torn_last_line_is_ignored_and_next_append_is_whole(tmp_path):
    path = shard_path(str(tmp_path))
    append_record(path, {"key": "a", "status": "completed"})
    append_record(path, {"key": "b", "status": "completed"})
    # A crash mid-write: half a record, no newline.
    line = json.dumps({"key": "c", "status": "completed", "metrics": {"eval/top1": 1.0}})
    with open(path, "ab") as f:
        f.write(line[: len(line) // 2].encode())
    assert [r["key"] for r in read_records(path)] == ["a", "b"]
    # The restarted sweep appends: the torn fragment must not swallow the new record.
    append_record(path, {"key": "c", "status": "completed"})
    assert [r["key"] for r in read_records(path)] == ["a", "b", "c"]
    with open(path, "rb") as f:
        assert f.read().endswith(b"\n")


def test_garbage_and_blank_lines_and_missing_file(tmp_path):
    path = shard_path(str(tmp_path))
    assert read_records(path) == []
    with open(path, "wb") as f:
        f.write(b'{"key": "a", "status": "completed"}\n\n\xff\xfe garbage\n[1, 2]\n')
    assert [r["key"] for r in read_records(path)] == ["a"]


def test_shards_have_own_files_and_read_all_merges(tmp_path):
    wd = str(tmp_path)
    paths = {shard_path(wd, i, 3) for i in range(3)}
    assert len(paths) == 3 and shard_path(wd) not in paths
    for i, p in enumerate(sorted(paths)):
        append_record(p, {"key": f"k{i}", "status": "completed"})
    assert sorted(r["key"] for r in read_all(wd)) == ["k0", "k1", "k2"]


def test_atomic_json_leaves_no_temp(tmp_path):
    path = os.path.join(tmp_path, "summary.json")
    write_json_atomic(path, {"x": 1})
    write_json_atomic(path, {"x": 2})
    with open(path) as f:
        assert json.load(f) == {"x": 2}
    assert os.listdir(tmp_path) == ["summary.json"]
