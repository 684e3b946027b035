"""scripts/results.py: one table over three workdirs (one of them gs://), in every format, and
the top-1 against MACs plot (issue 28 item 4)."""

import csv
import io
import json

import pytest
from etils import epath

from cnnx.sweeps import compare
from cnnx.train import workdir as wd
from tests.analysis.scripts import load_script
from tests.gcs import gcs  # noqa: F401
from tests.train.tiny import tiny_config


def _write_run(path: str, model: str, top1: float, **extra) -> dict:
    """A finished run's files as the loop writes them: config.json and results.json."""
    config = tiny_config(**{"model.name": model})
    epath.Path(path).mkdir(parents=True, exist_ok=True)
    wd.write_text_atomic(wd.config_path(path), config.to_json_best_effort(indent=2))
    results = {
        "status": "completed",
        "step": 12,
        "model": model,
        "num_params": 1000,
        "image_size": 32,
        "eval_image_size": 32,
        "channels": 1,
        "num_classes": 10,
        "wall_time_s": 12.5,
        "train/loss": 0.5,
        "eval/top1": top1,
        "eval/loss": 0.3,
        "eval/nll": 0.3,
        "eval/ece": 2.5,
        "eval/examples": 100,
        **extra,
    }
    wd.write_json_atomic(wd.results_path(path), results)
    return config


@pytest.fixture()
def three_runs(tmp_path, gcs):  # noqa: F811
    """Two local runs in one folder (found by searching it) and one in a bucket."""
    _write_run(str(tmp_path / "zoo" / "a"), "lenet5", 90.0, **{"v2/top1": 80.0, "v2/ece": 4.0})
    config = _write_run(str(tmp_path / "zoo" / "b"), "lenet5", 95.5)
    remote = gcs.folder("c")
    _write_run(remote, "lenet5", 70.25)
    return [str(tmp_path / "zoo"), remote], config


def test_the_table_holds_every_run_and_evaluator(three_runs):
    paths, config = three_runs
    runs = compare.find_runs(paths)
    assert [r.rsplit("/", 1)[-1] for r in runs] == ["a", "b", "c"]
    rows = [compare.read_run(r) for r in runs]
    from cnnx.sweeps.worker import model_cost

    macs = model_cost(config)["macs"]  # through the data: the table's traced count agrees
    assert [r["macs"] for r in rows] == [macs] * 3 and macs > 0
    assert compare.columns(rows) == [
        *("run", "model", "params", "macs", "resolution", "status", "step"),
        *("eval/top1", "eval/nll", "eval/ece", "v2/top1", "v2/ece", "wall_time_s"),
    ]
    table = compare.format_rows(rows, "markdown").splitlines()
    assert len(table) == 5 and table[0].startswith("| run | model | params | macs |")
    assert table[2].startswith("| a | lenet5 | 1000 |") and "| 90.00 |" in table[2]
    parsed = list(csv.DictReader(io.StringIO(compare.format_rows(rows, "csv"))))
    assert [(r["run"], r["eval/top1"], r["v2/top1"]) for r in parsed] == [
        ("a", "90.0", "80.0"),
        ("b", "95.5", ""),
        ("c", "70.25", ""),
    ]
    as_json = json.loads(compare.format_rows(rows, "json"))
    assert as_json[2]["eval/top1"] == 70.25 and as_json[1]["v2/top1"] is None


def test_the_script_writes_the_table_and_the_plot(three_runs, tmp_path, capsys):
    paths, _ = three_runs
    out, png = tmp_path / "runs.csv", tmp_path / "runs.png"
    code = load_script("results").main(
        [f"--workdirs={','.join(paths)}", "--format=csv", f"--output={out}", f"--plot={png}"]
    )
    assert code == 0 and out.read_text().startswith("run,model,params,macs,")
    assert png.stat().st_size > 1000 and f"-> {png}" in capsys.readouterr().out
    code = load_script("results").main([f"--workdirs={tmp_path / 'nothing'}"])
    assert code == 2 and "no results.json there or below" in capsys.readouterr().err
