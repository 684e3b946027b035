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
(one of each per round, the order rotating), and train_ratio / infer_ratio: the median over
rounds of torch's time / cnnx's, so that a shared host's drifting speed weighs on both alike.
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
flags.DEFINE_integer("repeats", 5, "Timed runs (the median is reported).", flag_values=FLAGS)
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
    ceil = result["ceilings"]
    lines = [
        f"device: {result['config']['device']}; XLA_FLAGS={result['config']['xla_flags']!r}",
        "matmul ceiling: "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in ceil["matmul_gflops"].items()),
        "",
    ]
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
        "torch speed (NCHW, channels-last), median over paired rounds.",
    ]
    cfg = result["config"]
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


def _torch_columns(fmt: str, figures: dict, info: dict) -> dict:
    """A model's result keys for one torch memory format ('nchw': torch_*, train_ratio, ...;
    'channels_last': torch_cl_*, train_ratio_cl, ...)."""
    prefix, suffix = ("torch", "") if fmt == "nchw" else ("torch_cl", "_cl")
    return {
        f"{prefix}_train_ips": figures["train_ips"],
        f"{prefix}_infer_ips": figures["infer_ips"],
        f"train_ratio{suffix}": figures["train_ratio"],
        f"infer_ratio{suffix}": figures["infer_ratio"],
        prefix: {**info, "train_ips": figures["train_ips"], "infer_ips": figures["infer_ips"]},
    }


def run(args) -> dict:
    if args.vs_torch:
        # torch before TensorFlow (which cnnx's data modules import): the reverse crashes.
        import timm  # noqa: F401
        import torch  # noqa: F401
        import torchvision  # noqa: F401

    import jax

    from cnnx import models
    from cnnx.analysis import benchmark

    config = {
        "batch": args.batch_size,
        "resolution": args.image_size,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "device": f"{jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs)",
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_avg": _load_avg(),
        "cpu_count": os.cpu_count(),
    }
    mm = {"float32": benchmark.matmul_ceiling(jax.numpy.float32, args.matmul_size)}
    if args.dtype == "bfloat16":
        mm["bfloat16"] = benchmark.matmul_ceiling(jax.numpy.bfloat16, args.matmul_size)
    result = {"config": config, "ceilings": {"matmul_gflops": mm}, "models": []}
    from tqdm import tqdm

    bar = tqdm(args.model_batches, desc="benchmark", unit="model", file=sys.stderr)
    for name, batch in bar:
        bar.set_postfix_str(f"{name} (compile, warm-up, {args.repeats} timed runs)")
        companions = {}
        if args.vs_torch:
            from cnnx.analysis import torch_speed

            if torch_speed.counterpart(name) is not None:
                resolution = args.image_size or models.get_spec(name).resolution
                companions = {
                    fmt: torch_speed.TorchRunner(
                        name, batch, resolution, args.dtype, channels_last=TORCH_FORMATS[fmt]
                    )
                    for fmt in args.torch_formats
                }
        m = benchmark.benchmark_model(
            name,
            batch,
            args.image_size,
            args.dtype,
            warmup=args.warmup,
            repeats=args.repeats,
            conv_ceiling_too=args.conv_ceiling,
            companions=companions,
        )
        m["train_fraction_of_matmul"] = m["train_gflops"] / mm[args.dtype]
        m["infer_fraction_of_matmul"] = m["infer_gflops"] / mm[args.dtype]
        for fmt, figures in m.pop("companions").items():
            m.update(_torch_columns(fmt, figures, companions[fmt].info))
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
    config["load_avg_after"] = _load_avg()
    return result


def _load_avg() -> list[float] | None:
    """The host's 1, 5 and 15-minute load averages (None where the OS has none)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


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

        from cnnx.analysis import benchmark

        rows = benchmark.depthwise_layers(args.batch_size, warmup=args.warmup, repeats=args.repeats)
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
