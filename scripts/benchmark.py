"""Throughput of inference and of the real training step, against ceilings measured alongside.

  python scripts/benchmark.py --models resnet50 --batch 16 --resolution 224 --vs-torch
  python scripts/benchmark.py --families --json families.json   # the README's table
  python scripts/benchmark.py --models resnet50:16,efficientnet_b0:8 --dtype bfloat16
  python scripts/benchmark.py --models resnet50 --input-pipeline      # + tf.data over JPEGs
  python scripts/benchmark.py --depthwise-layers --batch 8    # one layer: XLA, cnnx, torch

Per model: inference and train-step images/s (median of --repeats timed runs after --warmup),
compile times, achieved GFLOP/s and its fraction of two ceilings measured in the same run,
XLA's compiled peak memory; with --vs-torch the torchvision / timm counterpart timed in the
same process in both of torch's memory formats (NCHW and channels-last, which torch users
who care about CPU speed pick; --torch-formats to choose), its runs alternating with cnnx's
(one of each per round, the order rotating), and train_ratio / infer_ratio: the median over
rounds of torch's time / cnnx's, so that a shared host's drifting speed weighs on both alike.
--families is --vs-torch --resolution 224 over one model per family whose CPU speed the
README tracks, each at its own batch (FAMILIES below); `name:batch` in --models sets a batch
per model.

  matmul ceiling  GFLOP/s of one large square matrix product (--matmul-size) in float32, and
                  in bfloat16 too with --dtype bfloat16: the matrix unit's speed through XLA.
  conv ceiling    the model's own convolutions (every conv_general_dilated of its forward
                  pass, exact shapes and settings) timed one by one, forward + input and
                  weight gradients (weight only where the input is the image); their FLOPs /
                  the summed time. The step's speed if everything but convolutions were free.
  FLOPs           2 x multiply-accumulates of convolutions and matrix products; a train step
                  is 3 x forward (less the unused input gradient of the first layer).
  peak MB         XLA's memory analysis of the compiled step (arguments + outputs +
                  temporaries - donated buffers).

--input-pipeline writes --pipeline-images JPEGs (500x375) to a temporary folder and measures
images/s of the trainer's tf.data pipeline over them (folder source, inception crop at 224,
flip, normalise), and for each model how many train steps' worth of images it delivers
(input_over_train). --depthwise-layers times single depthwise convolutions instead (the
shapes of issue 20: XLA's grouped convolution, cnnx.backends.cpu.depthwise, torch channels-last;
forward and forward + both gradients, in alternation). See cnnx/analysis/benchmark.py for the
exact definitions.
"""

import argparse
import json
import os
import platform
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cnnx.backends.cpu import flags as xla_flags

xla_flags.apply()  # before JAX starts: XLA reads XLA_FLAGS once


# --families: (model, batch) at 224 px, the README's "Performance" table.
FAMILIES = (
    ("resnet50", 16),
    ("densenet121", 8),
    ("vit_b_16", 8),
    ("efficientnet_b0", 8),
    ("mobilenet_v2", 8),
    ("convnext_tiny", 8),
)
# --torch-formats: label -> channels_last.
TORCH_FORMATS = {"nchw": False, "channels_last": True}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--models", default="resnet50", help="comma-separated registry names, each `name:batch`"
    )
    p.add_argument("--families", action="store_true", help="the README's table (see above)")
    p.add_argument("--batch", type=int, default=16, help="for models given without one")
    p.add_argument("--resolution", type=int, default=None, help="default: each model's own")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs after compiling")
    p.add_argument("--vs-torch", action="store_true", help="time the torch counterpart too")
    p.add_argument(
        "--torch-formats",
        default="nchw,channels_last",
        help="torch memory formats to time with --vs-torch: nchw, channels_last or both",
    )
    p.add_argument(
        "--torch-channels-last", action="store_true", help="--torch-formats channels_last"
    )
    p.add_argument("--no-conv-ceiling", action="store_true", help="skip the per-conv timing")
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--input-pipeline", action="store_true", help="also time tf.data on JPEGs")
    p.add_argument("--pipeline-images", type=int, default=256)
    p.add_argument("--pipeline-batches", type=int, default=30)
    p.add_argument("--pipeline-resolution", type=int, default=224)
    p.add_argument("--json", default=None, help="write all figures here")
    p.add_argument(
        "--depthwise-layers", action="store_true", help="time single depthwise layers only"
    )
    args = p.parse_args(argv)
    if args.families:
        args.models = ",".join(f"{name}:{batch}" for name, batch in FAMILIES)
        args.resolution = args.resolution or 224
        args.vs_torch = True
    if args.torch_channels_last:
        args.torch_formats = "channels_last"
    args.torch_formats = [f.strip().lower() for f in args.torch_formats.split(",") if f.strip()]
    unknown = sorted(set(args.torch_formats) - set(TORCH_FORMATS))
    if unknown or not args.torch_formats:
        p.error(f"--torch-formats: {unknown or 'none'}; choose from {', '.join(TORCH_FORMATS)}")
    args.model_batches = [_model_batch(entry, args.batch, p) for entry in args.models.split(",")]
    args.model_batches = [mb for mb in args.model_batches if mb]
    return args


def _model_batch(entry: str, default_batch: int, parser) -> tuple[str, int] | None:
    """'name' or 'name:batch' -> (name, batch); '' -> None."""
    name, _, batch = entry.strip().partition(":")
    if not name:
        return None
    if not batch:
        return name, default_batch
    if not batch.isdigit() or int(batch) < 1:
        parser.error(f"--models: {entry!r}: the batch after ':' must be a positive integer")
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
        "batch": args.batch,
        "resolution": args.resolution,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "device": f"{jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs)",
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    mm = {"float32": benchmark.matmul_ceiling(jax.numpy.float32, args.matmul_size)}
    if args.dtype == "bfloat16":
        mm["bfloat16"] = benchmark.matmul_ceiling(jax.numpy.bfloat16, args.matmul_size)
    result = {"config": config, "ceilings": {"matmul_gflops": mm}, "models": []}
    for name, batch in args.model_batches:
        companions = {}
        if args.vs_torch:
            from cnnx.analysis import torch_speed

            if torch_speed.counterpart(name) is not None:
                resolution = args.resolution or models.get_spec(name).resolution
                companions = {
                    fmt: torch_speed.TorchRunner(
                        name, batch, resolution, args.dtype, channels_last=TORCH_FORMATS[fmt]
                    )
                    for fmt in args.torch_formats
                }
        m = benchmark.benchmark_model(
            name,
            batch,
            args.resolution,
            args.dtype,
            warmup=args.warmup,
            repeats=args.repeats,
            conv_ceiling_too=not args.no_conv_ceiling,
            companions=companions,
        )
        m["train_fraction_of_matmul"] = m["train_gflops"] / mm[args.dtype]
        m["infer_fraction_of_matmul"] = m["infer_gflops"] / mm[args.dtype]
        for fmt, figures in m.pop("companions").items():
            m.update(_torch_columns(fmt, figures, companions[fmt].info))
        result["models"].append(m)
        print(f"done: {name}", file=sys.stderr, flush=True)
    if args.input_pipeline:
        from cnnx.analysis import input_speed

        with tempfile.TemporaryDirectory() as root:
            input_speed.write_jpegs(root, args.pipeline_images)
            pipe = input_speed.pipeline_throughput(
                root, args.batch, args.pipeline_resolution, batches=args.pipeline_batches
            )
        result["input_pipeline"] = pipe
        for m in result["models"]:
            m["input_over_train"] = pipe["ips"] / m["train_ips"]
    return result


def layer_table(rows: list[dict]) -> str:
    """The stdout table of --depthwise-layers: milliseconds per layer."""
    heads = [f"{who} {kind}" for kind in ("fwd", "train") for who in ("xla", "cnnx", "torch")]
    lines = [f"{'layer (HxWxC k /s)':<22}" + "".join(f"{h:>12}" for h in heads)]
    for row in rows:
        cells = []
        for kind in ("fwd", "train"):
            for who in ("xla", "cnnx", "torch"):
                v = row.get(f"{who}_{kind}_ms")
                cells.append(f"{v:>12.2f}" if v is not None else f"{'-':>12}")
        lines.append(f"{row['layer']:<22}" + "".join(cells))
    lines += ["", "ms, median; train: forward + input and weight gradients; torch: channels-last"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.depthwise_layers:
        import torch  # noqa: F401  (before TensorFlow)

        from cnnx.analysis import benchmark

        rows = benchmark.depthwise_layers(args.batch, warmup=args.warmup, repeats=args.repeats)
        sys.stdout.write(layer_table(rows))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"batch": args.batch, "layers": rows}, f, indent=2)
        return 0
    result = run(args)
    sys.stdout.write(table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
