"""A hand-made findings directory: one finding's entry, its figure and findings.json."""

import json

from cnnx.findings import figures, suite
from cnnx.findings.verdict import HOLDS, Comparison


def entry(name: str = "degradation") -> dict:
    comparison = Comparison(
        "plain-56 ends at a higher training error than plain-20",
        "training error of the last epoch (%)",
        "plain-20",
        "plain-56",
        (2.0, 2.5),
        (40.0, 45.0),
        "greater",
        0.5,
    )
    return {
        "name": name,
        "title": "Degradation",
        "claim": "Deeper plain nets train worse.",
        "source": "He et al. 2015, Fig. 6",
        "rule": "Training error of the last epoch.",
        "budget": "8 runs.",
        "scale": "small",
        "seeds": [0, 1],
        "verdict": HOLDS,
        "comparisons": [comparison.to_json()],
        "values": {"degradation_plain20_s0": {"network": "plain-20", "train_error": 2.0}},
        "notes": ["A note."],
        "runs": [
            {
                "name": "degradation_plain20_s0",
                "label": "plain-20",
                "seed": 0,
                "status": "completed",
                "wall_s": 75.0,
                "command": "python train.py --config=configs/degradation_cifar.py:plain20,smoke",
            }
        ],
        "figure": f"{name}.png",
        "compute_s": 75.0,
        "wall_s": 80.0,
    }


def make_findings_dir(root) -> None:
    """Writes findings.json (small scale, the degradation entry) and its PNG into `root`."""
    (root / suite.FINDINGS_JSON).write_text(
        json.dumps({"scale": "small", "findings": {"degradation": entry()}})
    )
    with figures.figure(str(root / "degradation.png")) as (_, (ax,)):
        ax.plot([0, 1], [1, 0])
