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


def test_sweep_plot_labels_stay_inside_the_axes(tmp_path, monkeypatch):
    """A trial at either end of the MACs axis keeps its α/β/γ label on the canvas."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnx.sweeps.report import plot_accuracy_vs_flops

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to measure it
    records = [
        {
            "status": "completed",
            "index": i,
            "macs": macs,
            "metrics": {"eval/top1": top1},
            "tags": {"alpha": alpha, "beta": 1.2, "gamma": 1.15},
        }
        for i, (macs, top1, alpha) in enumerate([(85e6, 87.0, 1.2), (150e6, 57.0, 1.4)])
    ]
    assert plot_accuracy_vs_flops(records, str(tmp_path / "p.png"))
    (fig,) = figures
    renderer = fig.canvas.get_renderer()
    axes_box = fig.axes[0].get_window_extent(renderer)
    labels = [t for t in fig.axes[0].texts if "α=" in t.get_text()]
    assert len(labels) == 2
    for text in labels:
        box = text.get_window_extent(renderer)
        assert axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1, text.get_text()
