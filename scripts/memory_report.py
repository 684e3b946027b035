"""Per-device memory of a training step: replicated vs FSDP, with and without remat.

  python scripts/memory_report.py --models vit_l_16,convnext_xlarge --batch_size 8 \
      --mesh 8,1,1 --mesh 1,8,1 --optim adamw
  python scripts/memory_report.py --models efficientnet_b7 --batch_size 8 --image_size 600 \
      --mesh 8,1,1 --mesh 1,8,1
  python scripts/memory_report.py --models resnet152 --batch_size 8 --image_size 224 \
      --mesh 1,1,1 --remat both

Compiles (never runs) the trainer's step (`cnnx.train.steps.train_step`: forward, loss,
backward, optimizer update, state donated) for a mesh of `--devices` fake CPU devices, from
abstract inputs, so no parameter or image is allocated; prints XLA's per-device figures
(`compile().memory_analysis()`): arguments (state + batch), outputs, temporaries, peak =
arguments + outputs + temporaries - aliased (donated) buffers, and the compile time. A mesh is
data,fsdp,model; its product may be below --devices (the first devices are used). --batch_size is
global (split over data × fsdp). MiB = 2^20 bytes. Compiled with XLA:CPU's
`cse_barrier_expander` pass disabled, as the trainer does with remat on CPU: otherwise XLA:CPU
undoes rematerialisation (see `cnnx.backends.remat_compiler_options`).
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from absl import flags

from cnnx import process_defaults, script_flags

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

FLAGS = flags.FlagValues()
flags.DEFINE_string("models", None, "Comma-separated registry names.", flag_values=FLAGS)
flags.DEFINE_integer(
    "batch_size", 8, "Global batch size (split over the data and fsdp axes).", flag_values=FLAGS
)
flags.DEFINE_integer(
    "image_size", None, "Input side in pixels (default: each model's own).", flag_values=FLAGS
)
flags.DEFINE_multi_string(
    "mesh",
    ["8,1,1", "1,8,1"],
    "A mesh as data,fsdp,model device counts (repeatable).",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "remat",
    "off",
    ("off", "on", "both"),
    "Per-block rematerialisation: off, on or both.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "remat_policy",
    None,
    "A jax.checkpoint_policies name for --remat (default: save nothing).",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "optim",
    "sgd",
    "Optimizer whose state is counted: sgd, rmsprop, adamw, lamb or lars.",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "min_size",
    None,
    "Parameters below this many elements stay replicated under fsdp "
    "(the 'auto' rule's threshold; default: the trainer's).",
    flag_values=FLAGS,
)
flags.DEFINE_integer("devices", 8, "Fake CPU devices to compile for.", flag_values=FLAGS)
flags.DEFINE_string(
    "dtype", "float32", "Compute dtype (a jax.numpy name, e.g. bfloat16).", flag_values=FLAGS
)
flags.mark_flag_as_required("models", flag_values=FLAGS)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def main(argv=None) -> int:
    args = script_flags.parse(FLAGS, argv, __doc__)

    # Fake CPU devices must be configured before jax is imported.
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={args.devices}"
    )
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_platforms", "cpu")
    from cnnx import models
    from cnnx.analysis.memory import sharded_train_memory
    from cnnx.backends import remat_compiler_options
    from cnnx.config_schema import base_config
    from cnnx.parallel.mesh import make_mesh

    optim_cfg = base_config().optim
    optim_cfg.name = args.optim
    meshes = [tuple(int(v) for v in m.split(",")) for m in args.mesh]
    remats = {"off": [False], "on": [True], "both": [False, True]}[args.remat]
    print(
        f"global batch {args.batch_size}, optimizer {args.optim}, {args.dtype} compute, "
        f"{args.devices} fake CPU devices; MiB per device"
    )
    print(
        "| model | res | mesh d,f,m | remat | state | arguments | outputs | temps | peak "
        "| compile s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        spec = models.get_spec(name)
        r = args.image_size or spec.resolution
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
                    (args.batch_size, r, r, spec.in_chans),
                    spec.num_classes,
                    mesh,
                    optim_cfg=optim_cfg,
                    min_size=args.min_size,
                    # Kept for every case so that remat on/off compare like with like.
                    compiler_options=remat_compiler_options(),
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
