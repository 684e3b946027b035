"""The at-a-glance table of registered models, its README splice and the accuracy plots.

Every figure except throughput comes from a trace (no compilation), so the whole zoo takes
seconds per model on a CPU. Throughput (`speed=True`) compiles and runs each model here.
"""

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

START, END = "<!-- zoo:start -->", "<!-- zoo:end -->"


@dataclasses.dataclass
class ZooRow:
    """One model's entry."""

    name: str
    year: int | None
    resolution: int
    params: int
    gmacs: float
    depth: int
    activation_mb: float
    top1: tuple[float, str] | None
    speed: object = None
    error: str = ""
    training_only_params: int = 0


def zoo_row(name: str, speed: bool = False, speed_batch: int = 32) -> ZooRow:
    """Traces one registered model at its spec resolution (batch 1)."""
    from cnnx import models
    from cnnx.analysis.summary import summarize

    spec = models.get_spec(name)
    s = summarize(name, spec.resolution, batch=1)
    sp = None
    if speed:
        from cnnx.analysis.speed import throughput_registered

        sp = throughput_registered(name, spec.resolution, batch=speed_batch)
    return ZooRow(
        name=name,
        year=spec.year,
        resolution=spec.resolution,
        params=s.total_params,
        gmacs=s.macs / 1e9,
        depth=s.depth,
        activation_mb=s.activation_bytes / 2**20,
        top1=spec.top1,
        speed=sp,
        training_only_params=s.training_only_params,
    )


def zoo_rows(names: Sequence[str], speed: bool = False, log=None) -> list[ZooRow]:
    """`zoo_row` for each name; a model that fails to trace gets a row with its error."""
    from cnnx import models

    rows = []
    for name in names:
        try:
            rows.append(zoo_row(name, speed))
        except Exception as e:  # one broken model must not hide the others
            spec = models.get_spec(name)
            rows.append(ZooRow(name, spec.year, spec.resolution, 0, 0.0, 0, 0.0, spec.top1))
            rows[-1].error = f"{type(e).__name__}: {e}".splitlines()[0][:120]
        if log:
            log(name, rows[-1])
    return rows


def markdown(rows: Sequence[ZooRow]) -> str:
    """The markdown table, with its conventions and the top-1 sources as footnotes."""
    has_speed = any(r.speed is not None for r in rows)
    head = ["model", "year", "res", "params (M)", "GMACs", "depth", "act. mem (MB)"]
    if has_speed:
        head += ["infer img/s", "train img/s"]
    head += ["top-1 (%)"]
    sources: list[str] = []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.error:
            cells = [r.name, str(r.year or ""), str(r.resolution)] + ["—"] * (len(head) - 3)
            cells[-1] = f"error: {r.error}"
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
            continue
        cells = [
            f"`{r.name}`",
            str(r.year or ""),
            str(r.resolution),
            f"{r.params / 1e6:,.2f}",
            f"{r.gmacs:,.3f}" if r.gmacs >= 0.01 else f"{r.gmacs:.2g}",
            str(r.depth),
            f"{r.activation_mb:,.1f}" if r.activation_mb >= 0.1 else f"{r.activation_mb:.2g}",
        ]
        if has_speed:
            sp = r.speed
            cells += [f"{sp.inference_ips:,.0f}", f"{sp.train_ips:,.0f}"] if sp else ["", ""]
        if r.top1:
            if r.top1[1] not in sources:
                sources.append(r.top1[1])
            cells.append(f"{r.top1[0]:.2f} [{sources.index(r.top1[1]) + 1}]")
        else:
            cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "",
        "GMACs: multiply-accumulates (10⁹) of convolutions and matrix products at `res` "
        "(FLOPs = 2 × MACs; torchvision's 'GFLOPS' are these MACs). Depth: conv + fc layers "
        "on the longest input→output path. Activation memory: float32 outputs of every "
        "conv/fc/pool layer of one eval forward pass at batch 1 (MB = 2²⁰ bytes).",
    ]
    aux = [r for r in rows if r.training_only_params and not r.error]
    if aux:
        listed = ", ".join(f"`{r.name}` {r.training_only_params / 1e6:,.2f} M" for r in aux)
        notes[-1] += (
            " Every figure but params is of inference: params include layers that run in "
            f"training only (auxiliary heads: {listed})."
        )
    if has_speed:
        devices = {r.speed.device for r in rows if r.speed is not None}
        batches = {r.speed.batch for r in rows if r.speed is not None}
        notes.append(
            f"Throughput measured on {', '.join(sorted(devices))}, batch "
            f"{', '.join(map(str, sorted(batches)))}, median after warm-up."
        )
    notes += [f"[{i + 1}] {src}" for i, src in enumerate(sources)]
    return "\n".join(lines + notes) + "\n"


def splice(text: str, table: str) -> str:
    """Replaces what lies between the zoo markers of `text` with `table`."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(
            f"no '{START}' ... '{END}' markers found; add both lines where the zoo table "
            "should go and run again"
        )
    return pattern.sub(lambda _: f"{START}\n{table.rstrip()}\n{END}", text, count=1)


def plots(rows: Sequence[ZooRow], out_dir: str | Path) -> list[Path]:
    """Published top-1 against GMACs and against parameters (log x); returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pts = [r for r in rows if r.top1 and not r.error]
    paths = []
    for key, title, label, fname in (
        ("gmacs", "GMACs", "GMACs (multiply-accumulates, 10⁹) per image", "zoo_top1_vs_gmacs.png"),
        ("params", "parameters", "parameters (M)", "zoo_top1_vs_params.png"),
    ):
        fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
        xs = [r.gmacs if key == "gmacs" else r.params / 1e6 for r in pts]
        ys = [r.top1[0] for r in pts]
        ax.scatter(xs, ys, s=18)
        for x, y, r in zip(xs, ys, pts):
            ax.annotate(r.name, (x, y), fontsize=7, xytext=(3, 2), textcoords="offset points")
        if xs and min(xs) > 0:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("published ImageNet top-1 (%)")
        ax.grid(alpha=0.3)
        ax.set_title(f"Published ImageNet top-1 vs {title} ({len(pts)} models)")
        path = out_dir / fname
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
