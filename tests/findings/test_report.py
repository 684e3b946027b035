"""The Markdown page of a findings directory (cnnx/findings/report.py), from a hand-made
findings.json; and the one-scale-per-directory rule."""

import json

import pytest

from cnnx.errors import ConfigError
from cnnx.findings import report, suite
from cnnx.findings.registry import Scale
from tests.findings.helpers import make_findings_dir


@pytest.fixture
def findings_dir(tmp_path):
    root = tmp_path / "findings"
    root.mkdir()
    make_findings_dir(root)
    return root


def test_page_in_the_directory(findings_dir):
    path = report.render(str(findings_dir))
    assert path == str(findings_dir / "findings.md")
    with open(path) as f:
        page = f.read()
    assert page.startswith("# Findings: the field's lessons, rerun (small scale)")
    assert "**Decision rule.**" in page
    assert "| 1. [degradation](#degradation) | **holds** |" in page
    assert "## 1. Degradation: holds" in page
    assert "![degradation](degradation.png)" in page
    # The comparison row: per-seed values, effect, spread, floor, verdict.
    assert (
        "| plain-20: 2.00, 2.50 | plain-56: 40.00, 45.00 | 40.25 | 5.00 | 0.50 | **holds** |"
        in page
    )
    assert "python train.py --config=configs/degradation_cifar.py:plain20,smoke" in page
    assert "- A note." in page


def test_page_elsewhere_copies_the_figures(findings_dir, tmp_path):
    out = tmp_path / "docs" / "page.md"
    out.parent.mkdir()
    report.render(str(findings_dir), str(out), note="Measured on a busy host.")
    page = out.read_text()
    assert "![degradation](page/degradation.png)" in page
    assert "\n\nMeasured on a busy host.\n\n" in page
    assert (tmp_path / "docs" / "page" / "degradation.png").read_bytes()[:4] == b"\x89PNG"


def test_no_findings_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no findings\.json"):
        report.render(str(tmp_path))


def test_one_scale_per_directory(findings_dir):
    with pytest.raises(ConfigError, match="holds findings at scale 'small'"):
        suite.run_finding("degradation", Scale("smoke"), str(findings_dir))
    assert not (findings_dir / "runs").exists()  # refused before any run


def test_page_follows_the_suites_order(findings_dir):
    data = json.loads((findings_dir / suite.FINDINGS_JSON).read_text())
    later = {**data["findings"]["degradation"], "name": "vanishing", "title": "Vanishing"}
    data["findings"] = {"vanishing": later, **data["findings"]}  # stored out of order
    (findings_dir / suite.FINDINGS_JSON).write_text(json.dumps(data))
    with open(report.render(str(findings_dir))) as f:
        page = f.read()
    assert page.index("## 1. Degradation") < page.index("## 2. Vanishing")
