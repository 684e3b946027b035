"""Each finding's smoke form through the real trainer: a few steps per run at a tiny
resolution, one seed; it writes its verdict, its figure and its entry of findings.json.

The findings share one directory, as a suite does (the vanishing-gradients finding measures
the degradation finding's runs). The smoke scale checks the machinery, not the claims: the
verdicts are whatever three steps give.
"""

import json

import pytest

from cnnx.findings import registry, suite
from cnnx.findings.registry import Scale
from cnnx.findings.verdict import VERDICTS

# Over ~20 s on a quiet 2-core CPU (measured: transfer 40 s, scaling 25, fixres 21,
# degradation 18 and vanishing 15 on top of it); the others take 8-13 s. A run costs ~4 s,
# mostly compilation.
SLOW = {"degradation", "vanishing", "scaling", "fixres", "transfer"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in registry.names()],
)
def test_smoke_form_writes_a_verdict(name, smoke_dir):
    lines = []
    entry = suite.run_finding(name, Scale("smoke"), smoke_dir, log=lines.append)
    assert entry["verdict"] in VERDICTS
    assert entry["comparisons"] and all(c["verdict"] in VERDICTS for c in entry["comparisons"])
    assert entry["values"] and entry["seeds"] == [0]
    assert all(r["status"] in ("completed", "diverged") for r in entry["runs"])
    with open(f"{smoke_dir}/{entry['figure']}", "rb") as f:
        assert f.read(4) == b"\x89PNG"
    with open(f"{smoke_dir}/{suite.FINDINGS_JSON}") as f:
        stored = json.load(f)
    assert stored["scale"] == "smoke"
    assert stored["findings"][name]["verdict"] == entry["verdict"]
    assert lines[-1] == f"{name}: {entry['verdict']}"
