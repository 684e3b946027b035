"""First-layer filters of a checkpoint (or of a fresh initialisation) as a PNG grid.

  python scripts/show_filters.py --checkpoint runs/resnet50 --out filters.png
  python scripts/show_filters.py --random-init alexnet --out alexnet_init.png

Checkpoints are read with `cnnx.train.checkpoint.load_params(path)` (params pytree of the
latest step); the first convolution is found in the parameters themselves
(`cnnx.analysis.filters.first_conv_kernel`).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnx.analysis.filters import filters_grid, first_conv_kernel
from cnnx.backends.cpu import flags as xla_flags

xla_flags.apply()  # before JAX starts: XLA reads XLA_FLAGS once


def load_checkpoint_params(path: str):
    """Params of the latest checkpoint under `path`, via cnnx.train.checkpoint."""
    try:
        from cnnx.train import checkpoint
    except ImportError as e:
        raise SystemExit(f"cnnx.train.checkpoint is not available ({e}); use --random-init") from e
    if not hasattr(checkpoint, "load_params"):
        raise SystemExit(
            "cnnx.train.checkpoint has no load_params(path) -> params; use --random-init"
        )
    return checkpoint.load_params(path)


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
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint directory written by cnnx.train")
    src.add_argument("--random-init", metavar="MODEL", help="show a fresh init of MODEL")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cell", type=int, default=24, help="minimum pixels per filter")
    p.add_argument("--out", default="filters.png")
    args = p.parse_args(argv)

    if args.checkpoint:
        params = load_checkpoint_params(args.checkpoint)
    else:
        params = random_params(args.random_init, args.seed)
    path, kernel = first_conv_kernel(params)
    Path(args.out).write_bytes(filters_grid(params, args.cell))
    print(f"{args.out}: {kernel.shape[3]} filters {kernel.shape[0]}×{kernel.shape[1]} from {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
