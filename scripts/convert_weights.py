"""Convert a torchvision / timm weights file into a cnnx checkpoint.

    python scripts/convert_weights.py --model resnet18 --from resnet18.pth --out workdirs/r18_tv
    python eval.py --workdir=workdirs/r18_tv --config=configs/resnet.py:18
    python train.py --config=configs/resnet.py:18 --config.init.checkpoint=workdirs/r18_tv

Reads a `.pth`/`.pt` (torch.save of a state_dict, or of {'state_dict': ...}) or a
`.safetensors` file, maps every tensor onto the cnnx model (printing what mapped and what was
deliberately left out), refuses any shape mismatch with a clear message, and writes an orbax
checkpoint (step 0) plus the config.json that eval.py needs into --out.

The config's `data.mean` / `data.std` are the normalisation the reference weights expect,
including any the reference applies inside forward(): torchvision's pretrained GoogLeNet and
Inception v3 are built with `transform_input=True`, which re-normalises ImageNet-normalised
input to (x - 0.5) / 0.5, so their weights are written with mean = std = 0.5. That flag is
not in the state_dict: pass `--transform_input=false` for weights made without it. A
state_dict without auxiliary heads (torchvision's pretrained GoogLeNet) converts as it is;
the heads start fresh (they run only in training).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cnnx.backends.cpu import flags as xla_flags

xla_flags.apply()  # before JAX starts: XLA reads XLA_FLAGS once


def load_state_dict(path: str) -> dict:
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _report_text(model: str, report) -> str:
    """What the conversion used, left out and filled fresh, one line each."""
    mapped = len(report.mapped)
    lines = [f"mapped {mapped} of {mapped + len(report.skipped)} tensors into {model}"]
    if report.counters:
        lines[0] += f" ({report.counters} BatchNorm num_batches_tracked counters not needed)"
    if report.skipped:
        shown = ", ".join(report.skipped[:20]) + (" ..." if len(report.skipped) > 20 else "")
        lines.append(f"left out ({len(report.skipped)}): {shown}")
    if report.absent:
        lines.append(
            f"note: the file has no {', '.join(report.absent)} (auxiliary heads, used only in "
            "training); they start from fresh initial values and do not affect evaluation"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="cnnx model name, e.g. resnet18")
    parser.add_argument("--from", dest="source", required=True, help=".pth / .safetensors file")
    parser.add_argument("--out", required=True, help="output directory (a cnnx workdir)")
    parser.add_argument("--num_classes", type=int, default=None, help="head size in the file")
    parser.add_argument(
        "--transform_input",
        choices=("true", "false"),
        default=None,
        help="GoogLeNet / Inception v3 only: whether the torch model was built with "
        "transform_input (default: true, as torchvision's pretrained builders make it)",
    )
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from cnnx import convert, models
    from cnnx.errors import CnnxError
    from cnnx.train.checkpoint import Checkpointer
    from cnnx.train.config import base_config
    from cnnx.train.state import TrainState

    if not os.path.exists(args.source):
        print(f"error: {args.source} does not exist", file=sys.stderr)
        return 2
    from cnnx.train import workdir as wd

    if os.path.isdir(wd.checkpoints_dir(args.out)):
        print(f"error: {args.out} already holds checkpoints; choose a new --out", file=sys.stderr)
        return 2
    try:
        spec = models.get_spec(args.model)
        num_classes = args.num_classes or spec.num_classes
        transform_input = None if args.transform_input is None else args.transform_input == "true"
        mean, std, why = convert.input_normalization(args.model, transform_input)
        state_dict = load_state_dict(args.source)
        variables, report = convert.from_torch(
            args.model, state_dict, num_classes=num_classes, return_report=True
        )
    except CnnxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(_report_text(args.model, report))
    print(f"normalisation written to config.json: mean {list(mean)}, std {list(std)} ({why})")

    params = jax.tree.map(jnp.asarray, variables["params"])
    batch_stats = jax.tree.map(jnp.asarray, variables.get("batch_stats", {}))
    config = base_config()
    config.model.name = args.model
    config.model.num_classes = num_classes
    config.data.source = "tfds:imagenet2012"
    config.data.eval_split = "validation"
    config.data.mean = tuple(mean)
    config.data.std = tuple(std)
    # The optimizer state has the layout of the config's optimizer, so eval.py and resumed
    # training restore it; its values are fresh.
    from cnnx.train.loop import make_tx
    from cnnx.train.optim import make_schedule

    tx = make_tx(config, make_schedule(config.schedule, 0.0, 1, 1))
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                       opt_state=tx.init(params))  # fmt: skip
    os.makedirs(args.out, exist_ok=True)
    ckpt = Checkpointer(wd.checkpoints_dir(args.out), asynchronous=False)
    ckpt.save(0, state, wait=True)
    ckpt.close()
    wd.write_text_atomic(
        wd.config_path(args.out), config.to_json_best_effort(indent=2, sort_keys=True)
    )
    n = sum(x.size for x in jax.tree.leaves(params))
    print(f"wrote {args.out}/checkpoints/0 ({n:,} parameters) and {args.out}/config.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
