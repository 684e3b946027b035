"""scripts/findings.py: the list, its errors (one line, exit 2), the report of a directory."""

from cnnx.findings import registry
from tests.analysis.scripts import load_script
from tests.findings.helpers import make_findings_dir


def test_list(capsys):
    assert load_script("findings").main(["--list"]) == 0
    out = capsys.readouterr().out
    for i, name in enumerate(registry.names(), 1):
        assert f"{i}. {name}" in out


def test_unknown_finding_is_one_error_line(capsys, tmp_path):
    rc = load_script("findings").main(["--finding=degradaton", f"--workdir={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(
        "error: Unknown finding 'degradaton'. Did you mean degradation"
    )
    assert len(err.splitlines()) == 1 and not list(tmp_path.iterdir())


def test_report_of_an_empty_directory_is_an_error(capsys, tmp_path):
    assert load_script("findings").main(["--report", f"--workdir={tmp_path}"]) == 2
    assert "holds no findings.json" in capsys.readouterr().err


def test_report_writes_the_page(capsys, tmp_path):
    make_findings_dir(tmp_path)
    out = tmp_path / "docs" / "findings.md"
    out.parent.mkdir()
    assert (
        load_script("findings").main(["--report", f"--workdir={tmp_path}", f"--output={out}"]) == 0
    )
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert "## 1. Degradation: holds" in out.read_text()
    assert (tmp_path / "docs" / "findings" / "degradation.png").exists()


def test_nothing_to_do(capsys, tmp_path):
    assert load_script("findings").main([f"--workdir={tmp_path}"]) == 2
    assert "pass --finding=NAME, --all, --report or --list" in capsys.readouterr().err
