"""Convert a torchvision / timm weights file into a cnnx checkpoint.

    python scripts/convert_weights.py --model resnet18 --torch_weights resnet18.pth \
        --workdir workdirs/r18_tv
    python eval.py --workdir=workdirs/r18_tv --config=configs/resnet.py:18
    python train.py --config=configs/resnet.py:18 --config.init.checkpoint=workdirs/r18_tv

Reads a `.pth`/`.pt` (torch.save of a state_dict, or of {'state_dict': ...}) or a
`.safetensors` file, maps every tensor onto the cnnx model (printing what mapped and what was
deliberately left out), refuses any shape mismatch with a clear message, and writes an orbax
checkpoint (step 0) plus the config.json that eval.py needs into --workdir.

The config's `data.mean` / `data.std` are the normalisation the reference weights expect,
including any the reference applies inside forward(): torchvision's pretrained GoogLeNet and
Inception v3 are built with `transform_input=True`, which re-normalises ImageNet-normalised
input to (x - 0.5) / 0.5, so their weights are written with mean = std = 0.5. That flag is
not in the state_dict: pass `--transform_input=false` for weights made without it. A
state_dict without auxiliary heads (torchvision's pretrained GoogLeNet) converts as it is;
the heads start fresh (they run only in training).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from absl import flags

from cnnx import process_defaults, script_flags

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

FLAGS = flags.FlagValues()
flags.DEFINE_string("model", None, "cnnx model name, e.g. resnet18.", flag_values=FLAGS)
flags.DEFINE_string(
    "torch_weights",
    None,
    "The torchvision / timm weights: a .pth, .pt or .safetensors file.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "workdir", None, "The cnnx workdir to write (must hold no checkpoints yet).", flag_values=FLAGS
)
flags.DEFINE_integer(
    "num_classes",
    None,
    "Head size in the file (default: the model's, 1000 for ImageNet).",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "transform_input",
    None,
    ("true", "false"),
    "GoogLeNet / Inception v3 only: whether the torch model was built with transform_input "
    "(default: true, as torchvision's pretrained builders make it).",
    flag_values=FLAGS,
)
for _name in ("model", "torch_weights", "workdir"):
    flags.mark_flag_as_required(_name, flag_values=FLAGS)


def load_state_dict(path: str) -> dict:
    """The tensors of a .pth / .safetensors file (local or gs://), unwrapped from a checkpoint
    dict ('state_dict' or 'model') and without DataParallel's 'module.' prefix."""
    from etils import epath

    if path.endswith(".safetensors"):
        from safetensors.numpy import load

        return load(epath.Path(path).read_bytes())
    import torch

    with epath.Path(path).open("rb") as f:
        obj = torch.load(f, map_location="cpu", weights_only=True)
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
    args = script_flags.parse(FLAGS, argv, __doc__)
    import jax
    import jax.numpy as jnp
    from etils import epath
    from tqdm import tqdm

    from cnnx import convert, models
    from cnnx.config_schema import base_config
    from cnnx.errors import CnnxError
    from cnnx.train import workdir as wd
    from cnnx.train.checkpoint import Checkpointer
    from cnnx.train.state import TrainState

    if not epath.Path(args.torch_weights).exists():
        print(f"error: {args.torch_weights} does not exist", file=sys.stderr)
        return 2
    if epath.Path(wd.checkpoints_dir(args.workdir)).is_dir():
        print(
            f"error: {args.workdir} already holds checkpoints; choose a new --workdir",
            file=sys.stderr,
        )
        return 2
    # Stages, not tensors: reading and mapping a large model (ViT-L, ConvNeXt-XL) takes a while.
    bar = tqdm(total=3, unit="stage", file=sys.stderr, leave=False)
    try:
        spec = models.get_spec(args.model)
        num_classes = args.num_classes or spec.num_classes
        transform_input = None if args.transform_input is None else args.transform_input == "true"
        mean, std, why = convert.input_normalization(args.model, transform_input)
        bar.set_description(f"read {os.path.basename(args.torch_weights)}")
        state_dict = load_state_dict(args.torch_weights)
        bar.update()
        bar.set_description(f"map onto {args.model}")
        variables, report = convert.from_torch(
            args.model, state_dict, num_classes=num_classes, return_report=True
        )
    except CnnxError as e:
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    bar.update()
    bar.set_description("write the checkpoint")
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
    from cnnx.train.build import make_tx
    from cnnx.train.optim import make_schedule

    tx = make_tx(config, make_schedule(config.schedule, 0.0, 1, 1))
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
    )
    epath.Path(args.workdir).mkdir(parents=True, exist_ok=True)
    ckpt = Checkpointer(wd.checkpoints_dir(args.workdir), asynchronous=False)
    ckpt.save(0, state, wait=True)
    ckpt.close()
    bar.update()
    bar.close()
    wd.write_text_atomic(
        wd.config_path(args.workdir), config.to_json_best_effort(indent=2, sort_keys=True)
    )
    n = sum(x.size for x in jax.tree.leaves(params))
    print(f"wrote {args.workdir}/checkpoints/0 ({n:,} parameters) and {args.workdir}/config.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
