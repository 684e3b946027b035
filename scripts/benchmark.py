"""Throughput of inference and of the real training step, against ceilings measured alongside.

  python scripts/benchmark.py --models resnet50 --batch 16 --resolution 224 --vs-torch
  python scripts/benchmark.py --models resnet50,efficientnet_b0 --dtype bfloat16 --json b.json
  python scripts/benchmark.py --models resnet50 --input-pipeline      # + tf.data over JPEGs

Per model: inference and train-step images/s (median of --repeats timed runs after --warmup),
compile times, achieved GFLOP/s and its fraction of two ceilings measured in the same run,
XLA's compiled peak memory; with --vs-torch the torchvision / timm counterpart timed in the
same process, its runs alternating with cnnx's (one of each per round, the order rotating),
and train_ratio / infer_ratio: the median over rounds of torch's time / cnnx's, so that a
shared host's drifting speed weighs on both alike.

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
(input_over_train). See cnnx/analysis/benchmark.py for the exact definitions.
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="resnet50", help="comma-separated registry names")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--resolution", type=int, default=None, help="default: each model's own")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs after compiling")
    p.add_argument("--vs-torch", action="store_true", help="time the torch counterpart too")
    p.add_argument("--torch-channels-last", action="store_true")
    p.add_argument("--no-conv-ceiling", action="store_true", help="skip the per-conv timing")
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--input-pipeline", action="store_true", help="also time tf.data on JPEGs")
    p.add_argument("--pipeline-images", type=int, default=256)
    p.add_argument("--pipeline-batches", type=int, default=30)
    p.add_argument("--pipeline-resolution", type=int, default=224)
    p.add_argument("--json", default=None, help="write all figures here")
    return p.parse_args(argv)


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
        "t.*: torch counterpart images/s; x.*: cnnx / torch speed, median over paired rounds.",
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
    for name in [n.strip() for n in args.models.split(",") if n.strip()]:
        companion = None
        if args.vs_torch:
            from cnnx.analysis import torch_speed

            if torch_speed.counterpart(name) is not None:
                companion = torch_speed.TorchRunner(
                    name,
                    args.batch,
                    args.resolution or models.get_spec(name).resolution,
                    args.dtype,
                    channels_last=args.torch_channels_last,
                )
        m = benchmark.benchmark_model(
            name,
            args.batch,
            args.resolution,
            args.dtype,
            warmup=args.warmup,
            repeats=args.repeats,
            conv_ceiling_too=not args.no_conv_ceiling,
            companion=companion,
        )
        m["train_fraction_of_matmul"] = m["train_gflops"] / mm[args.dtype]
        m["infer_fraction_of_matmul"] = m["infer_gflops"] / mm[args.dtype]
        if companion is not None:
            m["torch_train_ips"] = m.pop("companion_train_ips")
            m["torch_infer_ips"] = m.pop("companion_infer_ips")
            m["torch"] = {
                **companion.info,
                "train_ips": m["torch_train_ips"],
                "infer_ips": m["torch_infer_ips"],
            }
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


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    sys.stdout.write(table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
