"""EfficientNet compound-scaling search (Tan & Le 2019, §3.3), for EfficientNet-B0 or any family.

    python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py --workdir=DIR
    python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py:resnet18 --workdir=DIR
    python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py:digits --workdir=DIR

Step 1 (these trials): at φ = 1, every (α, β, γ) on a grid (step 0.05) with α·β²·γ² within
`tol` (relative, 5%) of 2; each trial is the baseline scaled by depth α (`model.depth_mult`),
width β (`model.width_mult`) and resolution γ (`data.image_size = round(base_res·γ)`, snapped
at run time to the nearest size the scaled model accepts, recorded as the trial's `snapped`),
trained on a short budget. The best point by eval top-1 is chosen. Step 2 (printed in the summary):
φ = 1…7 from the chosen point beside the published B1–B7 table. The full default grid has 109
points including the paper's (1.2, 1.1, 1.15); on ImageNet, share it between workers (several
`scripts/sweep.py` processes, one per host or TPU slice, with a shared --storage). Each point is
enqueued in the Optuna study with its exact values (see cnnx/sweeps/study.py for why not
Optuna's GridSampler); trial folders read `alpha=1.2,beta=1.1,gamma=1.15-<key>`.

arg: comma-separated words and key=value pairs (`configs.common.parse_arg`; other words are
refused):
  <model>        first: any registered model as the baseline (default efficientnet_b0)
  digits         scikit-learn digits, base resolution 32 px, 150 steps, a 6-point grid
  step=0.05 tol=0.05 target=2.0     grid spacing, relative tolerance, FLOPs factor
  alpha=1.0:2.0 beta=1.0:1.5 gamma=1.0:1.5   search ranges (digits: 1.0:1.4, 1.0:1.2, 1.0:1.2)
  limit=N        N points spread over the grid (the paper's point kept when on the grid;
                 0: 6 on digits, all of it otherwise)
  steps=N / epochs=E / batch=B / res=R       training budget, batch, base resolution (0: the
                 defaults: steps from epochs, batch 1024 (digits: 150 steps, batch 64), the
                 model's resolution (digits: 32))
Expected (`:resnet20_cifar,digits,steps=80`, 6 trials, 2-6 min each on a busy 2-core CPU):
85-97% top-1 on the 359 held-out digits; at this budget the differences between points are
mostly noise — the run exercises the machinery, not the paper's finding. EfficientNet-B0 itself
(`:digits`) compiles and steps far more slowly on a CPU; use an accelerator for it.
"""

from cnnx.config_schema import base_config
from cnnx.models import get_spec
from cnnx.sweeps.grid import PAPER_POINT, constraint_grid, format_phi_table, subsample
from configs.common import digits_data, parse_arg

DEFAULT_MODEL = "efficientnet_b0"


def _range(text: str) -> tuple[float, float]:
    lo, hi = (float(x) for x in text.split(":"))
    return lo, hi


def _settings(arg):
    a = parse_arg(
        arg,
        model=DEFAULT_MODEL,
        digits=False,
        step=0.05,
        tol=0.05,
        target=2.0,
        alpha="",
        beta="",
        gamma="",
        limit=0,
        steps=0,
        epochs=5.0,
        batch=0,
        res=0,
    )
    digits = a.digits
    spec = get_spec(a.model)  # unknown names fail here, with suggestions
    return dict(
        model=a.model,
        digits=digits,
        base_res=a.res or (32 if digits else spec.resolution),
        step=a.step,
        tol=a.tol,
        target=a.target,
        # digits: a compact search box, so the deepest trial stays cheap on a CPU.
        alpha=_range(a.alpha or ("1.0:1.4" if digits else "1.0:2.0")),
        beta=_range(a.beta or ("1.0:1.2" if digits else "1.0:1.5")),
        gamma=_range(a.gamma or ("1.0:1.2" if digits else "1.0:1.5")),
        limit=a.limit or (6 if digits else None),
        steps=a.steps or (150 if digits else None),
        epochs=a.epochs,
        batch=a.batch or (64 if digits else 1024),
    )


def points(arg=None) -> list[tuple[float, float, float]]:
    s = _settings(arg)
    grid = constraint_grid(s["step"], s["tol"], s["target"], s["alpha"], s["beta"], s["gamma"])
    return subsample(grid, s["limit"]) if s["limit"] else grid


def _base(s):
    c = base_config()
    c.model.name = s["model"]
    c.train.batch_size = s["batch"]
    c.train.num_epochs = s["epochs"]
    c.train.num_steps = s["steps"]
    if s["digits"]:
        digits_data(c)
        c.data.channels = 1  # grey digits; the stem takes one channel
        c.optim.name = "sgd"
        c.optim.base_lr = 0.4
        c.optim.nesterov = True
        c.optim.weight_decay = 5e-4
        c.schedule.warmup_epochs = 1.0
        c.train.log_every_steps = 50
        c.eval.batch_size = 120
        c.eval.every_steps = 100_000  # evaluate once, at the end
        c.ckpt.every_steps = 50  # a killed trial resumes from its last 50-step mark
    else:
        # A short ImageNet budget (the paper searched on ImageNet with the B0 baseline).
        c.data.source = "tfds:imagenet2012"
        c.data.eval_split = "validation"
        c.optim.name = "sgd"
        c.optim.base_lr = 0.1
        c.optim.nesterov = True
        c.optim.weight_decay = 1e-5
        c.schedule.warmup_epochs = 1.0
        c.train.label_smoothing = 0.1
        c.eval.batch_size = 1000
        c.ckpt.every_steps = 1000
    return c


def get_sweep(arg=None):
    s = _settings(arg)
    trials = [
        {
            "model.depth_mult": a,
            "model.width_mult": b,
            "data.image_size": round(s["base_res"] * g),
            "_alpha": a,
            "_beta": b,
            "_gamma": g,
        }
        for a, b, g in points(arg)
    ]
    # round(R·γ) ignores the layers: each trial runs at the nearest size its model accepts.
    options = {"metric": "eval/top1", "mode": "max", "derived_sizes": ["data.image_size"]}
    return _base(s), trials, options


def _point(record):
    t = record.get("tags", {})
    return (t.get("alpha"), t.get("beta"), t.get("gamma"))


def highlight(records, arg=None):
    """The paper's (1.2, 1.1, 1.15) trial, drawn as a ring on the plot."""
    del arg
    paper = next((r for r in records if _point(r) == PAPER_POINT), None)
    return {"paper (1.2, 1.1, 1.15)": paper} if paper else {}


def _snapper(s):
    """(depth, width, res) -> the nearest size the scaled baseline accepts (None: none near)."""
    from cnnx.errors import ConfigError
    from cnnx.sweeps.sizes import accepted_size
    from cnnx.sweeps.spec import apply_overrides

    base = _base(s)

    def snap(depth, width, res):
        config = apply_overrides(base, {"model.depth_mult": depth, "model.width_mult": width})
        try:
            return accepted_size(config, res)
        except ConfigError:
            return None

    return snap


def report(best, records, arg=None):
    """Step 2: φ = 1…7 from the chosen point (and the paper's) beside the published B1–B7."""
    del records
    s = _settings(arg)
    out = []
    if best is not None:
        a, b, g = _point(best)
        out += [f"Chosen point: alpha={a:g} beta={b:g} gamma={g:g}", ""]
        out.append(format_phi_table(a, b, g, s["base_res"], snap=_snapper(s)))
        out.append("")
    out.append("For reference, the paper's point:")
    out.append(format_phi_table(*PAPER_POINT, 224))
    return "\n".join(out)
