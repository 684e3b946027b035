"""First-layer filters of a run (or of a fresh initialisation) as a PNG grid.

  python scripts/show_filters.py --workdir workdirs/lenet5 --output filters.png
  python scripts/show_filters.py --model alexnet --output alexnet_init.png   # fresh init

The parameters of the workdir's newest checkpoint (or of `--step`) are read with
`cnnx.train.checkpoint.load_params`; the first convolution is found in the parameters
themselves (`cnnx.analysis.filters.first_conv_kernel`). Each filter is scaled up to at least
`--cell` pixels; the title names the model, the layer and the step.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import flags

from cnnx import process_defaults, script_flags

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "workdir",
    None,
    "A run directory written by train.py (or convert_weights.py).",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "step", None, "Checkpoint step of --workdir (default: the newest).", flag_values=FLAGS
)
flags.DEFINE_string(
    "model",
    None,
    "Show a fresh initialisation of this registered model instead of a run.",
    flag_values=FLAGS,
)
flags.DEFINE_integer("seed", 0, "Initialisation seed for --model.", flag_values=FLAGS)
flags.DEFINE_integer("cell", 48, "Minimum pixels per filter side.", flag_values=FLAGS)
flags.DEFINE_string("output", "filters.png", "The PNG to write.", flag_values=FLAGS)
flags.register_multi_flags_validator(
    ["workdir", "model"],
    lambda v: (v["workdir"] is None) != (v["model"] is None),
    "pass exactly one of --workdir (a run) and --model (a fresh initialisation)",
    flag_values=FLAGS,
)


def load_checkpoint_params(workdir: str, step: int | None = None):
    """(params, step, model name or None) of the checkpoint at `step` (default: the newest)."""
    from cnnx.train import checkpoint
    from cnnx.train import workdir as wd

    if step is None:
        ckpt = checkpoint.Checkpointer(wd.checkpoints_dir(workdir), read_only=True)
        try:
            step = ckpt.latest_step()
        finally:
            ckpt.close()
    params = checkpoint.load_params(workdir, step)
    saved = wd.load_saved_config(workdir) or {}
    return params, step, (saved.get("model") or {}).get("name")


def random_params(name: str, seed: int = 0):
    import jax
    import jax.numpy as jnp

    from cnnx import models

    spec = models.get_spec(name)
    r = spec.test_resolution
    x = jnp.zeros((1, r, r, spec.in_chans), jnp.float32)
    model = models.create(name)
    return jax.jit(lambda x: model.init(jax.random.PRNGKey(seed), x, train=False))(x)["params"]


def main(argv=None) -> int:
    args = script_flags.parse(FLAGS, argv, __doc__)
    from cnnx.analysis.filters import filters_png, first_conv_kernel
    from cnnx.errors import CnnxError

    if args.workdir:
        try:
            params, step, model = load_checkpoint_params(args.workdir, args.step)
        except CnnxError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        source = f"{model or Path(args.workdir).name}, step {step}"
    else:
        params, source = random_params(args.model, args.seed), f"{args.model}, initialisation"
    path, kernel = first_conv_kernel(params)
    Path(args.output).write_bytes(filters_png(params, title=source, min_cell=args.cell))
    print(
        f"{args.output}: {kernel.shape[3]} filters {kernel.shape[0]}×{kernel.shape[1]} "
        f"from {path} ({source})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
