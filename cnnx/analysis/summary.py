"""Per-layer summary of a model: shapes, filters, windows, memory, parameters, MACs, totals.

One row per convolution, dense layer, attention product and pooling layer, in execution
order, read from the eval-mode jaxpr (`cnnx.analysis.trace`). Conventions, printed with every
table: activation memory in float32 bytes (the dtype the model computes in), KB = 1024 bytes;
parameters in K = 1,000 (weights, i.e. kernels, apart from biases, as the classic tables count
them); MACs in M = 10⁶ multiply-accumulates, FLOPs = 2 × MACs; shapes C×H×W without the batch.
"""

import csv
import dataclasses
import io
import json
import math

from cnnx.analysis.flops import MAC_KINDS, total_macs
from cnnx.analysis.memory import activation_bytes, param_bytes
from cnnx.analysis.trace import GLOBAL, RF, Layer, Trace, attach_params, trace

CONVENTIONS = (
    "Activation memory: output bytes of each layer for the whole batch in the model's dtype "
    "(float32: 4 bytes), KB = 1024 bytes. Parameters: K = 1,000; 'weights' are kernels, "
    "biases are counted apart; norm and other parameters appear only in the totals. "
    "MACs: multiply-accumulates of convolutions and matrix products, M = 10^6; "
    "FLOPs = 2 x MACs. Shapes are C×H×W per image. Padding: lo/hi where asymmetric. "
    "RF: receptive field size/jump in input pixels along the main path."
)

COLUMNS = (
    "layer",
    "kind",
    "input",
    "filters",
    "kernel",
    "stride",
    "padding",
    "output",
    "act_KB",
    "weights_K",
    "biases",
    "MACs_M",
    "RF",
)


@dataclasses.dataclass
class Summary:
    """A model's rows and totals (see `summarize`)."""

    model: str
    batch: int
    input_shape: tuple[int, ...]
    layers: list[Layer]
    total_params: int
    other_params: int
    param_bytes: int
    macs: int
    activation_bytes: int
    depth: int
    depth_pool: int
    training_only_params: int = 0
    memory: dict | None = None
    speed: object = None

    def totals(self) -> dict:
        """The totals as a flat dict (JSON-friendly)."""
        out = {
            "parameters": self.total_params,
            "weights": sum(layer.weights for layer in self.layers),
            "biases": sum(layer.biases for layer in self.layers),
            "other_parameters": self.other_params,
            "training_only_parameters": self.training_only_params,
            "parameter_bytes": self.param_bytes,
            "macs": self.macs,
            "gflops": 2 * self.macs / 1e9,
            "activation_bytes": self.activation_bytes,
            "depth": self.depth,
            "depth_with_pooling": self.depth_pool,
        }
        if self.memory:
            for step, m in self.memory.items():
                out[f"{step}_peak_bytes"] = m.peak
                out[f"{step}_temp_bytes"] = m.temp
                out[f"{step}_argument_bytes"] = m.argument
                out[f"{step}_output_bytes"] = m.output
        if self.speed is not None:
            out.update({f"speed_{k}": v for k, v in dataclasses.asdict(self.speed).items()})
        return out


def from_trace(model_name: str, tr: Trace) -> Summary:
    """Builds a `Summary` from a trace (attaches parameters to rows)."""
    other = attach_params(tr.layers, tr.params)
    return Summary(
        model=model_name,
        batch=tr.batch,
        input_shape=tr.input_shape,
        layers=tr.layers,
        total_params=sum(math.prod(x.shape) for x in _leaves(tr.params)),
        other_params=other,
        param_bytes=param_bytes(tr.params),
        macs=total_macs(tr),
        activation_bytes=activation_bytes(tr),
        depth=tr.depth,
        depth_pool=tr.depth_pool,
        training_only_params=tr.training_only_params,
    )


def _leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def summarize(name: str, resolution: int | None = None, batch: int = 1, **overrides) -> Summary:
    """Summary of a registered model at `resolution` (default: the spec's) and `batch`."""
    from cnnx import models

    spec = models.get_spec(name)
    r = resolution or spec.resolution
    tr = trace(models.create(name, **overrides), (batch, r, r, spec.in_chans))
    return from_trace(name, tr)


def _shape(shape: tuple[int, ...]) -> str:
    if len(shape) == 3:  # (H, W, C) -> C×H×W
        return f"{shape[2]}×{shape[0]}×{shape[1]}"
    return "×".join(str(d) for d in shape)


def _window(values, pads=False) -> str:
    if values is None:
        return ""
    if pads:
        lo, hi = values[0]
        return str(lo) if lo == hi else f"{lo}/{hi}"
    return str(values[0]) if len(set(values)) == 1 else "×".join(str(v) for v in values)


def _rf(rf) -> str:
    if isinstance(rf, RF):
        return f"{rf.size}/{rf.jump}"
    return "global" if rf == GLOBAL else ""


def row_values(layer: Layer, batch: int) -> dict:
    """The displayed values of one row (numbers stay numbers; shapes become strings)."""
    weighted = layer.kind in ("conv", "dwconv", "fc")
    return {
        "layer": layer.name + (f" (×{layer.repeat})" if layer.repeat > 1 else ""),
        "kind": layer.kind,
        "input": _shape(layer.in_shape),
        "filters": layer.filters if layer.filters is not None else "",
        "kernel": _window(layer.kernel),
        "stride": _window(layer.stride),
        "padding": _window(layer.padding, pads=True),
        "output": _shape(layer.out_shape),
        "act_KB": layer.out_bytes / 1024,
        "weights_K": layer.weights / 1000 if weighted else "",
        "biases": layer.biases if weighted else "",
        "MACs_M": layer.macs / 1e6 if layer.kind in MAC_KINDS else "",
        "RF": _rf(layer.rf),
    }


def _fmt(v) -> str:
    if isinstance(v, float):
        if v == 0 or abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.1f}" if abs(v) >= 1 else f"{v:.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _total_row(s: Summary) -> dict:
    t = s.totals()
    return {
        "layer": "TOTAL",
        "kind": "",
        "input": _shape(s.input_shape),
        "filters": "",
        "kernel": "",
        "stride": "",
        "padding": "",
        "output": "",
        "act_KB": s.activation_bytes / 1024,
        "weights_K": t["weights"] / 1000,
        "biases": t["biases"],
        "MACs_M": s.macs / 1e6,
        "RF": "",
    }


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:,.3f} {unit}"
    return f"{n:,.0f}"


def _footer(s: Summary) -> list[str]:
    t = s.totals()
    lines = [
        f"model {s.model}, batch {s.batch}, input {_shape(s.input_shape)}",
        f"parameters {t['parameters']:,} ({t['parameter_bytes'] / 2**20:,.2f} MB): "
        f"weights {t['weights']:,} + biases {t['biases']:,} + other {t['other_parameters']:,}"
        + (
            f" (of which {s.training_only_params:,} in layers that run in training only, "
            "e.g. auxiliary heads: no rows, MACs or memory above)"
            if s.training_only_params
            else ""
        ),
        f"MACs {_si(s.macs)} (FLOPs = 2 × MACs = {_si(2 * s.macs)})",
        f"activations {s.activation_bytes / 2**20:,.2f} MB (sum of row outputs)",
        f"depth {s.depth} (conv + fc on the longest path; {s.depth_pool} counting pooling)",
    ]
    for step, m in (s.memory or {}).items():
        lines.append(
            f"compiled {step} step: peak {m.peak / 2**20:,.1f} MB = arguments "
            f"{m.argument / 2**20:,.1f} + outputs {m.output / 2**20:,.1f} + temporaries "
            f"{m.temp / 2**20:,.1f} - aliased {m.alias / 2**20:,.1f} MB"
        )
    if s.speed is not None:
        sp = s.speed
        lines.append(
            f"speed on {sp.device} (batch {sp.batch}, {sp.resolution} px): inference "
            f"{sp.inference_ips:,.1f} img/s (compile {sp.inference_compile_s:.1f} s), train "
            f"{sp.train_ips:,.1f} img/s (compile {sp.train_compile_s:.1f} s)"
        )
    lines.append("Conventions: " + CONVENTIONS)
    return lines


def to_text(s: Summary) -> str:
    """Aligned plain-text table."""
    rows = [row_values(layer, s.batch) for layer in s.layers] + [_total_row(s)]
    cells = [list(COLUMNS)] + [[_fmt(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    right = {"filters", "act_KB", "weights_K", "biases", "MACs_M"}

    def line(row):
        return "  ".join(
            v.rjust(w) if c in right else v.ljust(w) for v, w, c in zip(row, widths, COLUMNS)
        ).rstrip()

    sep = "-" * len(line(cells[0]))
    body = [line(cells[0]), sep] + [line(r) for r in cells[1:-1]] + [sep, line(cells[-1])]
    return "\n".join([*body, "", *_footer(s)]) + "\n"


def to_markdown(s: Summary) -> str:
    """GitHub markdown table with the totals and conventions below it."""
    rows = [row_values(layer, s.batch) for layer in s.layers] + [_total_row(s)]
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(out + [""] + [f"- {line}" for line in _footer(s)]) + "\n"


def to_csv(s: Summary) -> str:
    """CSV with one row per layer and a TOTAL row; units are in the column names."""
    buf = io.StringIO()
    header = {
        "act_KB": "activation_KB(float32;1KB=1024B)",
        "weights_K": "weights_K(1K=1000)",
        "MACs_M": "MACs_M(1M=1e6;FLOPs=2xMACs)",
    }
    w = csv.writer(buf)
    w.writerow([header.get(c, c) for c in COLUMNS])
    for r in [row_values(layer, s.batch) for layer in s.layers] + [_total_row(s)]:
        w.writerow([f"{r[c]:.3f}" if isinstance(r[c], float) else r[c] for c in COLUMNS])
    return buf.getvalue()


def to_json(s: Summary) -> str:
    """JSON: {model, batch, input, conventions, layers: [...], totals: {...}} (exact numbers)."""
    layers = []
    for layer in s.layers:
        d = dataclasses.asdict(layer)
        d["rf"] = dataclasses.asdict(layer.rf) if isinstance(layer.rf, RF) else layer.rf
        layers.append(d)
    doc = {
        "model": s.model,
        "batch": s.batch,
        "input_hwc": list(s.input_shape),
        "conventions": CONVENTIONS,
        "layers": layers,
        "totals": s.totals(),
    }
    return json.dumps(doc, indent=1) + "\n"


FORMATS = {"text": to_text, "markdown": to_markdown, "csv": to_csv, "json": to_json}
