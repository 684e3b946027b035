"""`DIR/findings.json` as a Markdown page with the figures (`scripts/findings.py --report`).

The page opens with the decision rule and a summary table (a row per finding: verdict, the
decisive numbers, seeds, compute), then a section per finding: claim and source, the rule,
the figure, the comparisons (per-seed values, effect, spread, floor, verdict), the measured
values per run, notes, and the commands that repeat each run. Written next to the figures:
in DIR itself, or elsewhere (docs/findings.md) with the figures copied into a folder named
after the page (docs/findings/).
"""

import math
import os
import shutil

from cnnx.findings import registry
from cnnx.findings.suite import load

RULE = (
    "A comparison sets two arms against each other, each measured once per seed. Its effect is "
    "the difference of the arms' means in the claimed direction; its spread is the larger "
    "of the two arms' ranges over seeds; its floor, fixed before running, is the smallest "
    "difference that counts. A directional claim **holds** when the effect exceeds both the "
    "spread and the floor, **does not hold at this scale** when the opposite difference does "
    "or when there is no effect beyond the floor and the seeds agree within it, and is "
    "**inconclusive** when the seeds disagree by more than the effect. A claim of similar "
    "values holds when the difference and the spread are both within the floor. A finding "
    "holds when all its comparisons hold, does not hold when any does not, and is otherwise "
    "inconclusive (cnnx/findings/verdict.py)."
)


def _num(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-2):
            return f"{v:.2e}"
        return f"{v:.2f}"
    return str(v).replace("|", "\\|")


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_num(c) for c in row) + " |" for row in rows]
    return lines


def _seeds(values: list[float]) -> str:
    return ", ".join(_num(v) for v in values)


def _summary(entries: list[dict]) -> list[str]:
    rows = []
    for i, e in enumerate(entries, 1):
        decisive = "; ".join(
            f"{c['b_label']} vs {c['a_label']}: {_num(c['mean_b'])} vs {_num(c['mean_a'])}"
            for c in e["comparisons"]
        )
        rows.append(
            [
                f"{i}. [{e['name']}](#{e['name']})",
                f"**{e['verdict']}**",
                decisive or "–",
                len(e["seeds"]),
                len(e["runs"]),
                _duration(e["compute_s"]),
            ]
        )
    header = ["finding", "verdict", "means compared", "seeds", "runs", "training time"]
    return _table(header, rows)


def _section(i: int, e: dict, image: str) -> list[str]:
    out = [
        f'<a id="{e["name"]}"></a>',
        f"## {i}. {e['title']}: {e['verdict']}",
        "",
        f"**Claim.** {e['claim']}",
        "",
        f"**Source.** {e['source']}",
        "",
        f"**Test.** {e['rule']} Budget: {e['budget']}",
        "",
        f"![{e['name']}]({image})",
        "",
    ]
    rows = [
        [
            c["claim"],
            f"{c['a_label']}: {_seeds(c['a'])}",
            f"{c['b_label']}: {_seeds(c['b'])}",
            c["effect"],
            c["spread"],
            c["floor"],
            f"**{c['verdict']}**",
        ]
        for c in e["comparisons"]
    ]
    if rows:
        metrics = sorted({c["metric"] for c in e["comparisons"]})
        out += [f"Compared: {'; '.join(metrics)}.", ""]
        out += _table(
            ["comparison", "a (per seed)", "b (per seed)", "effect", "spread", "floor", "verdict"],
            rows,
        )
        out.append("")
    values = e["values"]
    if values:
        keys = []
        for row in values.values():
            keys += [k for k in row if k not in keys]
        out += _table(
            ["run", *keys], [[name, *(row.get(k) for k in keys)] for name, row in values.items()]
        )
        out.append("")
    for note in e["notes"]:
        out += [f"- {note}"]
    if e["notes"]:
        out.append("")
    out += [
        f"<details><summary>{len(e['runs'])} runs ({_duration(e['compute_s'])} of training; "
        "each repeats with its command)</summary>",
        "",
    ]
    out += [f"- `{r['command']}` ({r['status']}, {_duration(r['wall_s'])})" for r in e["runs"]]
    out += ["", "</details>", ""]
    return out


def render(root: str, output: str | None = None, note: str = "") -> str:
    """Writes the page for `root`'s findings.json and returns its path.

    Args:
      root: the findings directory.
      output: the Markdown file (default `DIR/findings.md`); outside DIR the figures are
        copied into the folder `<output without .md>/` beside it.
      note: a paragraph under the title (e.g. the machine and its load when the times were
        measured).

    Raises:
      FileNotFoundError: DIR holds no findings.json.
    """
    data = load(root)
    if not data["findings"]:
        raise FileNotFoundError(f"{root} holds no findings.json: run scripts/findings.py first")
    output = output or os.path.join(root, "findings.md")
    out_dir = os.path.dirname(os.path.abspath(output))
    same_dir = os.path.abspath(root) == out_dir
    image_dir = "" if same_dir else os.path.splitext(os.path.basename(output))[0]
    if image_dir:
        os.makedirs(os.path.join(out_dir, image_dir), exist_ok=True)
    order = registry.names()
    entries = sorted(
        data["findings"].values(),
        key=lambda e: order.index(e["name"]) if e["name"] in order else len(order),
    )
    lines = [
        f"# Findings: the field's lessons, rerun ({data['scale']} scale)",
        "",
        "Generated by `scripts/findings.py --report` from the findings.json of a run of "
        f"`python scripts/findings.py --all --scale={data['scale']} --workdir=DIR`; do not edit "
        "by hand. Each finding is a claim from the literature, the runs that test it (through "
        "the real trainer, each in its own workdir), the measurement and a verdict.",
        "",
        *([note, ""] if note else []),
        "Training time is the runs' wall time on the machine that ran them (shared runs "
        "count in each finding that uses them); each finding's budget is the estimate for a "
        "quiet 2-core CPU.",
        "",
        f"**Decision rule.** {RULE}",
        "",
        *_summary(entries),
        "",
    ]
    for i, e in enumerate(entries, 1):
        image = e["figure"]
        if image_dir:
            src = os.path.join(root, e["figure"])
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(out_dir, image_dir, e["figure"]))
            image = f"{image_dir}/{e['figure']}"
        lines += _section(i, e, image)
    with open(output, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    return output
