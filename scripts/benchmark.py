"""Throughput of inference and of the real training step, against ceilings measured alongside.

  python scripts/benchmark.py --models resnet50 --batch_size 16 --image_size 224 --vs_torch
  python scripts/benchmark.py --families --output families.json   # the README's table
  python scripts/benchmark.py --models resnet50:16,efficientnet_b0:8 --dtype bfloat16
  python scripts/benchmark.py --models resnet50 --input_pipeline      # + tf.data over JPEGs
  python scripts/benchmark.py --depthwise_layers --batch_size 8   # one layer: XLA, cnnx, torch

Per model: inference and train-step images/s (median of --repeats timed runs after --warmup),
compile times, achieved GFLOP/s and its fraction of two ceilings measured in the same run,
XLA's compiled peak memory; with --vs_torch the torchvision / timm counterpart timed in the
same process in both of torch's memory formats (NCHW and channels-last, which torch users
who care about CPU speed pick; --torch_formats to choose), its runs alternating with cnnx's
(one of each per pair, the order rotating), and train_ratio / infer_ratio: torch's time /
cnnx's, paired, so that a shared host's drifting speed weighs on both alike.

--rounds=N (default 3) repeats the whole comparison N times: every round re-measures the
host's matmul ceilings (XLA's and, with --vs_torch, torch's) and the load average, then
times each model in turn (--warmup untimed and --repeats timed runs), so one model's rounds
lie minutes apart. Each ratio is the median of the rounds' ratios, printed with its min-max;
a ratio whose rounds straddle 1.0 or spread wider than --max_spread of its median is marked
'?' with a WARNING: on such a host that run cannot say which is faster. Models are compiled
once, in the first round, and all stay in memory until the end. docs/xla_cpu.md says how to
read the spread and why hosts of one kind differ.
--families is --vs_torch --image_size 224 over one model per family whose CPU speed the
README tracks, each at its own batch (FAMILIES below); `name:batch_size` in --models sets a batch
per model.

  matmul ceiling  GFLOP/s of one large square matrix product (--matmul_size) in float32, and
                  in bfloat16 too with --dtype bfloat16: the matrix unit's speed through XLA.
  conv ceiling    the model's own convolutions (every conv_general_dilated of its forward
                  pass, exact shapes and settings) timed one by one, forward + input and
                  weight gradients (weight only where the input is the image); their FLOPs /
                  the summed time. The step's speed if everything but convolutions were free.
  FLOPs           2 x multiply-accumulates of convolutions and matrix products; a train step
                  is 3 x forward (less the unused input gradient of the first layer).
  peak MB         XLA's memory analysis of the compiled step (arguments + outputs +
                  temporaries - donated buffers).

--input_pipeline writes --pipeline_images JPEGs (500x375) to a temporary folder and measures
images/s of the trainer's tf.data pipeline over them (folder source, inception crop at 224,
flip, normalise), and for each model how many train steps' worth of images it delivers
(input_over_train). --depthwise_layers times single depthwise convolutions instead (the
shapes of issue 20: XLA's grouped convolution, cnnx.backends.cpu.depthwise, torch channels-last;
forward and forward + both gradients, in alternation). See cnnx/analysis/benchmark.py for the
exact definitions.
"""

import json
import os
import platform
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags

from cnnx import process_defaults, script_flags

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

# --families: (model, batch) at 224 px, the README's "Performance" table.
FAMILIES = (
    ("resnet50", 16),
    ("densenet121", 8),
    ("vit_b_16", 8),
    ("efficientnet_b0", 8),
    ("mobilenet_v2", 8),
    ("convnext_tiny", 8),
)
# --torch_formats: label -> channels_last.
TORCH_FORMATS = {"nchw": False, "channels_last": True}


FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "models",
    "resnet50",
    "Comma-separated registry names, each `name` or `name:batch_size`.",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "families",
    False,
    "The README's table: one model per family at 224 px, vs torch.",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "batch_size", 16, "Batch size of the models given without one.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "image_size", None, "Input side in pixels (default: each model's own).", flag_values=FLAGS
)
flags.DEFINE_enum("dtype", "float32", ("float32", "bfloat16"), "Compute dtype.", flag_values=FLAGS)
flags.DEFINE_integer(
    "repeats", 5, "Timed runs per round (the median is reported).", flag_values=FLAGS
)
flags.DEFINE_integer(
    "rounds",
    3,
    "Separated rounds of the whole comparison (each model's rounds apart in time); ratios are "
    "the median over rounds, with their min-max.",
    flag_values=FLAGS,
)
flags.DEFINE_float(
    "max_spread",
    0.2,
    "Widest (max - min) / median of a ratio over rounds that still allows a verdict.",
    flag_values=FLAGS,
)
flags.DEFINE_integer("warmup", 2, "Untimed runs after compiling.", flag_values=FLAGS)
flags.DEFINE_bool(
    "vs_torch",
    False,
    "Time the torchvision / timm counterpart in the same process too.",
    flag_values=FLAGS,
)
flags.DEFINE_list(
    "torch_formats",
    ["nchw", "channels_last"],
    "Torch memory formats to time with --vs_torch: nchw, channels_last or both.",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "conv_ceiling",
    True,
    "Time the model's convolutions one by one (--noconv_ceiling skips).",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "matmul_size",
    2048,
    "Side of the square matrix product of the matmul ceiling.",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "input_pipeline",
    False,
    "Also time the tf.data pipeline over JPEGs it writes.",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "pipeline_images", 256, "JPEGs (500x375) written for --input_pipeline.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "pipeline_batches", 30, "Batches timed by --input_pipeline.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "pipeline_image_size", 224, "Crop size of the --input_pipeline pipeline.", flag_values=FLAGS
)
flags.DEFINE_string("output", None, "Write every figure to this JSON file.", flag_values=FLAGS)
flags.DEFINE_bool(
    "depthwise_layers",
    False,
    "Time single depthwise layers only (XLA, cnnx, torch).",
    flag_values=FLAGS,
)


def parse_args(argv=None):
    """The flags as a namespace, with --families expanded and `model_batches` added."""
    args = script_flags.parse(FLAGS, argv, __doc__)
    if args.families:
        args.models = ",".join(f"{name}:{batch}" for name, batch in FAMILIES)
        args.image_size = args.image_size or 224
        args.vs_torch = True
    args.torch_formats = [f.strip().lower() for f in args.torch_formats if f.strip()]
    unknown = sorted(set(args.torch_formats) - set(TORCH_FORMATS))
    if unknown or not args.torch_formats:
        _usage_error(
            f"--torch_formats: {unknown or 'none'}; choose from {', '.join(TORCH_FORMATS)}"
        )
    args.model_batches = [_model_batch(entry, args.batch_size) for entry in args.models.split(",")]
    args.model_batches = [mb for mb in args.model_batches if mb]
    if args.rounds < 1 or args.repeats < 1:
        _usage_error("--rounds and --repeats must be at least 1")
    return args


def _usage_error(message: str):
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _model_batch(entry: str, default_batch: int) -> tuple[str, int] | None:
    """'name' or 'name:batch' -> (name, batch); '' -> None."""
    name, _, batch = entry.strip().partition(":")
    if not name:
        return None
    if not batch:
        return name, default_batch
    if not batch.isdigit() or int(batch) < 1:
        _usage_error(f"--models: {entry!r}: the batch size after ':' must be a positive integer")
    return name, int(batch)


def table(result: dict) -> str:
    """The stdout summary of a benchmark result."""
    from cnnx.analysis import host

    cfg = result["config"]
    lines = [f"device: {cfg['device']}; XLA_FLAGS={cfg['xla_flags']!r}"]
    if cfg.get("host"):
        threads = cfg.get("torch_threads")
        lines.append(
            f"host: {host.describe(cfg['host'])}"
            + (f"; torch {threads} threads" if threads else "")
        )
    lines += [*host_lines(result), ""]
    cols = [
        ("model", "model", "<20"),
        ("dtype", "dtype", "<8"),
        ("B", "batch", ">3"),
        ("res", "resolution", ">4"),
        ("infer/s", "infer_ips", ">8.2f"),
        ("train/s", "train_ips", ">8.2f"),
        ("compile", "train_compile_s", ">7.1f"),
        ("GFLOP/s", "train_gflops", ">7.1f"),
        ("%mm", "train_fraction_of_matmul", ">5.0%"),
        ("conv", "conv_ceiling_train_gflops", ">6.1f"),
        ("%conv", "train_fraction_of_conv", ">6.0%"),
        ("peakMB", "train_peak_mb", ">7.0f"),
        ("t.infer", "torch_infer_ips", ">7.2f"),
        ("t.train", "torch_train_ips", ">7.2f"),
        ("x.inf", "infer_ratio", ">5.2f"),
        ("x.trn", "train_ratio", ">5.2f"),
        ("cl.inf", "torch_cl_infer_ips", ">6.2f"),
        ("cl.trn", "torch_cl_train_ips", ">6.2f"),
        ("xcl.i", "infer_ratio_cl", ">5.2f"),
        ("xcl.t", "train_ratio_cl", ">5.2f"),
    ]
    widths = [re.match(r"[<>]\d+", spec).group() for _, _, spec in cols]
    lines.append(" ".join(format(h, w) for (h, _, _), w in zip(cols, widths)))
    for m in result["models"]:
        row = [
            format(m[key], spec) if m.get(key) is not None else format("-", w)
            for (_, key, spec), w in zip(cols, widths)
        ]
        lines.append(" ".join(row))
    lines += [
        "",
        "infer/s, train/s: images/s (median); compile: train step, s; GFLOP/s: achieved by the",
        "train step; %mm, %conv: of the matmul and conv-only ceilings (conv: GFLOP/s of the",
        "model's convolutions timed alone, fwd+bwd); peakMB: XLA's train-step peak;",
        "t.*, cl.*: torch counterpart images/s, NCHW and channels-last; x.*, xcl.*: cnnx /",
        "torch speed (NCHW, channels-last), median over rounds of paired runs.",
    ]
    lines += spread_lines(result)
    warning = load_warning(cfg.get("load_avg"), cfg.get("load_avg_after"), cfg.get("cpu_count"))
    if warning:
        lines += ["", warning]
    pipe = result.get("input_pipeline")
    if pipe:
        lines.append(
            f"input pipeline: {pipe['ips']:.1f} images/s ({pipe['pp']} at {pipe['resolution']} "
            f"px, batch {result['config']['batch']}, {pipe['files']} JPEGs of "
            f"{pipe['mean_file_kb']:.0f} KB)"
        )
        for m in result["models"]:
            lines.append(f"  {m['model']}: {m['input_over_train']:.1f}x what its train step uses")
    return "\n".join(lines) + "\n"


def host_lines(result: dict) -> list[str]:
    """The host's matmul ceilings over rounds and its load average, for the summary."""
    from cnnx.analysis import rounds

    cfg, ceil = result["config"], result["ceilings"]
    n = cfg.get("rounds", 1)
    per_round = ceil.get("matmul_gflops_rounds") or {
        f"xla {d}": [v] for d, v in ceil["matmul_gflops"].items()
    }
    spreads = {key: rounds.spread(values) for key, values in per_round.items()}
    lines = [
        f"matmul ceiling, GFLOP/s, median (min-max) over {n} round(s): "
        + ", ".join(
            f"{key} {s.median:.0f} ({s.low:.0f}-{s.high:.0f})" for key, s in spreads.items()
        )
    ]
    load = cfg.get("load_avg")
    if load:
        during = " ".join(f"{r[0]:.1f}" for r in cfg.get("load_avg_rounds") or [] if r)
        after = cfg.get("load_avg_after")
        lines.append(
            f"load average (1 min): {load[0]:.1f} at the start"
            + (f", {during} at each round's start" if during else "")
            + (f", {after[0]:.1f} at the end" if after else "")
        )
    for key, s in spreads.items():
        reason = rounds.verdict(s, cfg.get("max_spread", rounds.MAX_SPREAD), parity=None)
        if reason and s.rounds > 1:
            lines.append(f"WARNING: the {key} ceiling moved between rounds ({reason})")
    return lines


# Ratio columns of the spread table: (heading, result key); each has a `{key}_rounds` list.
RATIOS = (
    ("x.inf", "infer_ratio"),
    ("x.trn", "train_ratio"),
    ("xcl.i", "infer_ratio_cl"),
    ("xcl.t", "train_ratio_cl"),
)


def spread_lines(result: dict) -> list[str]:
    """The cnnx / torch ratios as median (min-max) over rounds, and a warning for each whose
    rounds do not allow a verdict (`cnnx.analysis.rounds.verdict`)."""
    from cnnx.analysis import rounds

    cfg = result["config"]
    max_spread = cfg.get("max_spread", rounds.MAX_SPREAD)
    cols = [(h, k) for h, k in RATIOS if any(m.get(f"{k}_rounds") for m in result["models"])]
    if not cols:
        return []
    n = cfg.get("rounds", 1)
    lines = ["", f"cnnx / torch speed, median (min-max) over {n} round(s):"]
    lines.append(f"{'model':<20}" + "".join(f"{h:>18}" for h, _ in cols))
    warnings = []
    for m in result["models"]:
        cells = []
        for _, key in cols:
            values = m.get(f"{key}_rounds")
            if not values:
                cells.append(f"{'-':>18}")
                continue
            s = rounds.spread(values)
            reason = rounds.verdict(s, max_spread)
            cells.append(f"{str(s) + ('?' if reason else ''):>18}")
            if reason and s.rounds > 1:
                warnings.append(f"WARNING: {m['model']} {key}: {reason}")
        lines.append(f"{m['model']:<20}" + "".join(cells))
    if n < 2:
        warnings.append(
            "WARNING: one round: no spread measured, and one run's ratio on a shared host is "
            "not a result (--rounds=3 or more)"
        )
    elif not warnings:
        warnings.append(
            f"every ratio's rounds agree: one side of 1.0, spread within {max_spread:.0%}"
        )
    else:
        warnings.append("?: too wide to conclude; rerun on a quieter host or with more rounds")
    return lines + warnings


def _torch_columns(fmt: str, figures: dict, info: dict) -> dict:
    """A model's result keys for one torch memory format ('nchw': torch_*, train_ratio, ...;
    'channels_last': torch_cl_*, train_ratio_cl, ...)."""
    prefix, suffix = ("torch", "") if fmt == "nchw" else ("torch_cl", "_cl")
    return {
        f"{prefix}_train_ips": figures["train_ips"],
        f"{prefix}_infer_ips": figures["infer_ips"],
        f"train_ratio{suffix}": figures["train_ratio"],
        f"infer_ratio{suffix}": figures["infer_ratio"],
        f"train_ratio{suffix}_rounds": figures["train_ratio_rounds"],
        f"infer_ratio{suffix}_rounds": figures["infer_ratio_rounds"],
        prefix: {**info, "train_ips": figures["train_ips"], "infer_ips": figures["infer_ips"]},
    }


def run(args) -> dict:
    if args.vs_torch:
        # torch before TensorFlow (which cnnx's data modules import): the reverse crashes.
        import timm  # noqa: F401
        import torch
        import torchvision  # noqa: F401

    import jax

    from cnnx import models
    from cnnx.analysis import benchmark, host, rounds, torch_speed

    config = {
        "batch": args.batch_size,
        "resolution": args.image_size,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "max_spread": args.max_spread,
        "device": f"{jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs)",
        "host": host.cpu(),
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_avg": host.load_avg(),
        "load_avg_rounds": [],
        "cpu_count": os.cpu_count(),
    }
    if args.vs_torch:
        config["torch_threads"] = torch.get_num_threads()
    dtypes = ["float32"] + (["bfloat16"] if args.dtype == "bfloat16" else [])
    libraries = ["xla"] + (["torch"] if args.vs_torch else [])
    ceilings = {f"{lib} {d}": [] for lib in libraries for d in dtypes}  # per round, GFLOP/s
    benches = [None] * len(args.model_batches)
    from tqdm import tqdm

    bar = tqdm(total=args.rounds * len(benches), desc="benchmark", unit="model", file=sys.stderr)
    for r in range(args.rounds):
        config["load_avg_rounds"].append(host.load_avg())
        for d in dtypes:  # the host's ceilings, every round: how far its speed moved
            ceilings[f"xla {d}"].append(
                benchmark.matmul_ceiling(benchmark.DTYPES[d], args.matmul_size)
            )
            if args.vs_torch:
                ceilings[f"torch {d}"].append(torch_speed.matmul_ceiling(d, args.matmul_size))
        for i, (name, batch) in enumerate(args.model_batches):
            bar.set_postfix_str(f"{name}, round {r + 1}/{args.rounds}")
            if benches[i] is None:  # compiled once, in the first round
                benches[i] = benchmark.ModelBenchmark(
                    name,
                    batch,
                    args.image_size,
                    args.dtype,
                    conv_ceiling_too=args.conv_ceiling,
                    companions=_companions(args, name, batch, models),
                )
            benches[i].run_round(args.warmup, args.repeats)
            bar.update()
    bar.close()
    medians = {key: rounds.spread(values).median for key, values in ceilings.items()}
    result = {
        "config": config,
        "ceilings": {
            "matmul_gflops": {d: medians[f"xla {d}"] for d in dtypes},
            "torch_matmul_gflops": {d: medians[f"torch {d}"] for d in dtypes if args.vs_torch},
            "matmul_gflops_rounds": ceilings,
        },
        "models": [],
    }
    mm = result["ceilings"]["matmul_gflops"][args.dtype]
    for bench in benches:
        m = bench.result()
        m["train_fraction_of_matmul"] = m["train_gflops"] / mm
        m["infer_fraction_of_matmul"] = m["infer_gflops"] / mm
        for fmt, figures in m.pop("companions").items():
            m.update(_torch_columns(fmt, figures, bench.companions[fmt].info))
        result["models"].append(m)
    if args.input_pipeline:
        from cnnx.analysis import input_speed

        with tempfile.TemporaryDirectory() as root:
            input_speed.write_jpegs(root, args.pipeline_images)
            pipe = input_speed.pipeline_throughput(
                root, args.batch_size, args.pipeline_image_size, batches=args.pipeline_batches
            )
        result["input_pipeline"] = pipe
        for m in result["models"]:
            m["input_over_train"] = pipe["ips"] / m["train_ips"]
    config["load_avg_after"] = host.load_avg()
    return result


def _companions(args, name: str, batch: int, models) -> dict:
    """The torch counterparts of a model to time alongside it, by memory format ({} if none)."""
    if not args.vs_torch:
        return {}
    from cnnx.analysis import torch_speed

    if torch_speed.counterpart(name) is None:
        return {}
    resolution = args.image_size or models.get_spec(name).resolution
    return {
        fmt: torch_speed.TorchRunner(
            name, batch, resolution, args.dtype, channels_last=TORCH_FORMATS[fmt]
        )
        for fmt in args.torch_formats
    }


def load_warning(before: list[float] | None, after: list[float] | None, cpus: int) -> str | None:
    """A warning line when the host was busy enough to skew the timings, else None.

    Other processes were running when the 1-minute load average before the run was at least
    half the CPU count (the benchmark had not started yet), or when after the run it
    exceeded the CPU count (more runnable threads than cores, the benchmark's included).
    """
    if not before or not after or not cpus:
        return None
    if before[0] < cpus / 2 and after[0] <= cpus:
        return None
    return (
        f"WARNING: the host was busy (1-min load average {before[0]:.1f} before, "
        f"{after[0]:.1f} after, {cpus} CPUs): other processes shared the cores, so these "
        "figures are low and noisy; the torch ratios (paired rounds) are the most reliable. "
        "Rerun on an idle host."
    )


def layer_table(rows: list[dict]) -> str:
    """The stdout table of --depthwise_layers: milliseconds per layer."""
    who_all = ("xla", "cnnx", "onednn", "torch")
    heads = [f"{who} {kind}" for kind in ("fwd", "train") for who in who_all]
    lines = [f"{'layer (HxWxC k /s)':<26}" + "".join(f"{h:>13}" for h in heads)]
    for row in rows:
        cells = []
        for kind in ("fwd", "train"):
            for who in who_all:
                v = row.get(f"{who}_{kind}_ms")
                cells.append(f"{v:>13.2f}" if v is not None else f"{'-':>13}")
        lines.append(f"{row['layer']:<26}" + "".join(cells))
    lines += [
        "",
        "ms, median; train: forward + input and weight gradients; torch: channels-last;",
        "xla: lax.conv_general_dilated; cnnx: cnnx's depthwise formulation on XLA; onednn:",
        "cnnx.backends.cpu.onednn (what runs by default on one CPU device when it is built)",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.depthwise_layers:
        import torch  # noqa: F401  (before TensorFlow)

        from cnnx.analysis import grouped_layers

        rows = grouped_layers.depthwise_layers(
            args.batch_size, warmup=args.warmup, repeats=args.repeats
        )
        sys.stdout.write(layer_table(rows))
        if args.output:
            with open(args.output, "w") as f:
                json.dump({"batch": args.batch_size, "layers": rows}, f, indent=2)
        return 0
    result = run(args)
    sys.stdout.write(table(result))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
