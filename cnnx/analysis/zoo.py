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
    family: str = ""


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
        family=spec.family,
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
            rows.append(
                ZooRow(
                    name, spec.year, spec.resolution, 0, 0.0, 0, 0.0, spec.top1, family=spec.family
                )
            )
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


def _overlaps(a, b, pad: float = 0.0) -> bool:
    """Whether two (x0, y0, x1, y1) boxes overlap (touching counts as apart)."""
    return a[0] < b[2] + pad and b[0] < a[2] + pad and a[1] < b[3] + pad and b[1] < a[3] + pad


def place_labels(ax, points, labels, *, fontsize: float = 7.0, colors=None) -> list:
    """Labels scatter points without overlap: a greedy search around each point.

    Points in crowded places are labelled first; each label takes the nearest free spot on
    rings of growing radius (16 directions) that overlaps no placed label, no marker and
    stays inside the axes, and gets a thin leader line when it sits away from its point.
    Call it once the axes' limits and position are final (it works in display pixels).

    Args:
      ax: the matplotlib axes holding the points.
      points: (x, y) in data coordinates.
      labels: one string per point.
      fontsize: of the labels, in points.
      colors: one matplotlib colour per label (default black).

    Returns:
      The `Text` artists (annotations), in the order of `points`.
    """
    import math

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    xy = [tuple(to_px(p)) for p in points]
    frame = ax.get_window_extent(renderer)
    bounds = (frame.x0 + 2, frame.y0 + 2, frame.x1 - 2, frame.y1 - 2)
    marker = 4.0  # half-size of a marker's keep-out box, px
    taken = [(x - marker, y - marker, x + marker, y + marker) for x, y in xy]
    sizes = []
    for label in labels:  # label extents in px, measured once
        probe = ax.text(0, 0, label, fontsize=fontsize)
        box = probe.get_window_extent(renderer)
        sizes.append((box.width, box.height))
        probe.remove()

    def crowd(i):
        return sum(math.dist(xy[i], q) < 60 for q in xy)

    order = sorted(range(len(xy)), key=lambda i: (-crowd(i), xy[i][0]))
    angles = [k * math.pi / 8 for k in (0, 2, 6, 1, 7, 3, 5, 4, 12, 14, 10, 15, 9, 13, 11, 8)]
    texts = [None] * len(xy)
    for i in order:
        (x, y), (w, h) = xy[i], sizes[i]
        best = None
        for radius in [4, 8, 14, 22, 32, 44, 58, 74, 92, 112, 135, 160, 190, 225, 265, 310]:
            for a in angles:
                dx, dy = radius * math.cos(a), radius * math.sin(a)
                # Anchor the box on the side that faces away from the point.
                x0 = x + dx - (w if dx < -1e-6 else 0 if dx > 1e-6 else w / 2)
                y0 = y + dy - (h if dy < -1e-6 else 0 if dy > 1e-6 else h / 2)
                box = (x0, y0, x0 + w, y0 + h)
                inside = box[0] >= bounds[0] and box[2] <= bounds[2]
                inside = inside and box[1] >= bounds[1] and box[3] <= bounds[3]
                if inside and not any(_overlaps(box, b, pad=1.0) for b in taken):
                    best = (box, radius)
                    break
            if best:
                break
        if best is None:  # nowhere free: beside the point, as before
            best = ((x + 3, y + 2, x + 3 + w, y + 2 + h), 0)
        box, radius = best
        taken.append(box)
        # Offsets are in points for annotate: px * 72 / dpi.
        scale = 72.0 / fig.dpi
        texts[i] = ax.annotate(
            labels[i],
            points[i],
            xytext=((box[0] - x) * scale, (box[1] - y) * scale),
            textcoords="offset points",
            ha="left",
            va="bottom",
            fontsize=fontsize,
            color=(colors[i] if colors else "black"),
            arrowprops=(
                dict(arrowstyle="-", lw=0.4, color="0.5", shrinkA=0, shrinkB=2)
                if radius > 10
                else None
            ),
        )
    return texts


def scatter_figure(rows: Sequence[ZooRow], key: str = "gmacs"):
    """Published top-1 against GMACs (`key='gmacs'`) or parameters (`'params'`), log x.

    One colour and marker per family, each family's members joined in order of x, a legend
    of families beside the axes, and every model named without overlapping labels
    (`place_labels`). Returns the matplotlib figure (1,560 × 960 px at its dpi).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r.top1 and not r.error]
    xs_of = {"gmacs": lambda r: r.gmacs, "params": lambda r: r.params / 1e6}[key]
    what, xlabel = {
        "gmacs": ("GMACs", "GMACs per image (multiply-accumulates, 10⁹; log scale)"),
        "params": ("parameters", "parameters (millions; log scale)"),
    }[key]
    fig = plt.figure(figsize=(13, 8), dpi=120)
    ax = fig.add_axes((0.06, 0.07, 0.76, 0.87))
    families = sorted({r.family or r.name for r in pts})
    # Strong colours only (tab10, then Dark2), and a marker that changes with the colour.
    palette = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors
    markers = "osD^v<>phX"
    color_of, points, names, colors = {}, [], [], []
    for k, family in enumerate(families):
        members = sorted((r for r in pts if (r.family or r.name) == family), key=xs_of)
        color = palette[k % len(palette)]
        color_of[family] = color
        fx, fy = [xs_of(r) for r in members], [r.top1[0] for r in members]
        ax.plot(fx, fy, "-", color=color, lw=0.8, alpha=0.6, zorder=1)
        ax.scatter(
            fx,
            fy,
            s=30,
            color=color,
            marker=markers[k % len(markers)],
            zorder=3,
            label=f"{family} ({len(members)})",
            edgecolors="white",
            linewidths=0.4,
        )
        for r in members:
            points.append((xs_of(r), r.top1[0]))
            names.append(r.name)
            colors.append(tuple(0.8 * c for c in color[:3]))  # darker: readable text
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    if xs and min(xs) > 0:
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.6, max(xs) * 2.2)  # room for the labels of the extremes
    if ys:
        ax.set_ylim(min(ys) - 2, max(ys) + 4)
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel("published ImageNet top-1 (%)", fontsize=11)
    ax.grid(alpha=0.3)
    ax.set_title(
        f"Published ImageNet top-1 vs {what} ({len(pts)} models, {len(families)} families)",
        fontsize=12,
    )
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title="family",
        title_fontsize=9,
        frameon=False,
    )
    place_labels(ax, points, names, fontsize=7, colors=colors)
    return fig


def plots(rows: Sequence[ZooRow], out_dir: str | Path) -> list[Path]:
    """Writes `scatter_figure` for GMACs and for parameters; returns the PNG paths."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, fname in (("gmacs", "zoo_top1_vs_gmacs.png"), ("params", "zoo_top1_vs_params.png")):
        fig = scatter_figure(rows, key)
        path = out_dir / fname
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
