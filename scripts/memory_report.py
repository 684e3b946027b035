"""Per-device memory of a training step: replicated vs FSDP, with and without remat.

  python scripts/memory_report.py --models vit_l_16,convnext_xlarge --batch 8 \
      --mesh 8,1,1 --mesh 1,8,1 --optim adamw
  python scripts/memory_report.py --models efficientnet_b7 --batch 8 --resolution 600 \
      --mesh 8,1,1 --mesh 1,8,1
  python scripts/memory_report.py --models resnet152 --batch 8 --resolution 224 \
      --mesh 1,1,1 --remat both

Compiles (never runs) the trainer's step (`cnnx.train.steps.train_step`: forward, loss,
backward, optimizer update, state donated) for a mesh of `--devices` fake CPU devices, from
abstract inputs, so no parameter or image is allocated; prints XLA's per-device figures
(`compile().memory_analysis()`): arguments (state + batch), outputs, temporaries, peak =
arguments + outputs + temporaries - aliased (donated) buffers, and the compile time. A mesh is
data,fsdp,model; its product may be below --devices (the first devices are used). --batch is
global (split over data × fsdp). MiB = 2^20 bytes. Compiled with XLA:CPU's
`cse_barrier_expander` pass disabled, as the trainer does with remat on CPU: otherwise XLA:CPU
undoes rematerialisation (see `cnnx.layers.remat.compiler_options`).
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnnx.backends.cpu import flags as xla_flags

xla_flags.apply()  # before JAX starts: XLA reads XLA_FLAGS once


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", required=True, help="comma-separated registry names")
    p.add_argument("--batch", type=int, default=8, help="global batch")
    p.add_argument("--resolution", type=int, default=None, help="default: each model's own")
    p.add_argument("--mesh", action="append", default=None, help="data,fsdp,model (repeatable)")
    p.add_argument("--remat", choices=("off", "on", "both"), default="off")
    p.add_argument("--remat_policy", default=None, help="a jax.checkpoint_policies name")
    p.add_argument("--optim", default="sgd", help="sgd | rmsprop | adamw | lamb | lars")
    p.add_argument("--min_size", type=int, default=None, help="'auto' rule threshold")
    p.add_argument("--devices", type=int, default=8, help="fake CPU devices")
    p.add_argument("--dtype", default="float32", help="compute dtype (bfloat16 possible)")
    args = p.parse_args(argv)

    # Fake CPU devices must be configured before jax is imported.
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={args.devices}"
    )
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_platforms", "cpu")
    from cnnx import models
    from cnnx.analysis.memory import sharded_train_memory
    from cnnx.layers.remat import compiler_options
    from cnnx.train.config import base_config
    from cnnx.train.mesh import make_mesh

    optim_cfg = base_config().optim
    optim_cfg.name = args.optim
    meshes = [tuple(int(v) for v in m.split(",")) for m in (args.mesh or ["8,1,1", "1,8,1"])]
    remats = {"off": [False], "on": [True], "both": [False, True]}[args.remat]
    print(
        f"global batch {args.batch}, optimizer {args.optim}, {args.dtype} compute, "
        f"{args.devices} fake CPU devices; MiB per device"
    )
    print(
        "| model | res | mesh d,f,m | remat | state | arguments | outputs | temps | peak "
        "| compile s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        spec = models.get_spec(name)
        r = args.resolution or spec.resolution
        for remat in remats:
            kwargs = {"dtype": getattr(jnp, args.dtype)}
            if remat:
                kwargs["remat"] = args.remat_policy or True
            model = models.create(name, **kwargs)
            for shape in meshes:
                mesh = make_mesh(*shape)
                t0 = time.time()
                m, state = sharded_train_memory(
                    model,
                    (args.batch, r, r, spec.in_chans),
                    spec.num_classes,
                    mesh,
                    optim_cfg=optim_cfg,
                    min_size=args.min_size,
                    # Kept for every case so that remat on/off compare like with like.
                    compiler_options=compiler_options(),
                )
                seconds = time.time() - t0
                print(
                    f"| {name} | {r} | {','.join(map(str, shape))} | {'on' if remat else 'off'} "
                    f"| {_mib(state)} | {_mib(m.argument)} | {_mib(m.output)} | {_mib(m.temp)} "
                    f"| {_mib(m.peak)} | {seconds:.0f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
