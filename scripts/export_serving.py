"""Export a run's inference as a serving artefact: serialized StableHLO (`jax.export`).

    python scripts/export_serving.py --workdir=workdirs/r50 --output=r50.jax
    python scripts/export_serving.py --workdir=workdirs/r50 --output=r50.jax \
        --input_size=224 --platforms=cpu,cuda --ema

The artefact takes uint8 images (batch, H, W, C) of any batch size and returns float32
logits (batch, num_classes); evaluation's preprocessing (the run's eval_pp: resize, or
resize and centre crop at its crop ratio, then its mean / std) and the variables are inside,
lowered for every platform asked (no hardware needed). It loads with jax alone:

    import jax, numpy as np
    serving = jax.export.deserialize(bytearray(open("r50.jax", "rb").read()))
    logits = serving.call(np.zeros((8, 256, 256, 3), np.uint8))

`<output>.json` describes the input, output, platforms and preprocessing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from absl import flags

from cnnx import process_defaults, script_flags

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

FLAGS = flags.FlagValues()
script_flags.define_checkpoint_flags(FLAGS, "export")
flags.DEFINE_string("output", None, "The artefact to write (local or gs://).", flag_values=FLAGS)
flags.DEFINE_list(
    "input_size",
    None,
    "H,W (or one side) of the images served (default: evaluation's size before its centre "
    "crop, e.g. 256 for a 224 model at crop 0.875, so the resize is the identity).",
    flag_values=FLAGS,
)
flags.DEFINE_list(
    "platforms",
    ["cpu", "cuda", "tpu"],
    "Platforms to lower for (cpu, cuda, rocm, tpu).",
    flag_values=FLAGS,
)
flags.mark_flag_as_required("output", flag_values=FLAGS)


def _input_size(values) -> tuple[int, int] | None:
    if not values:
        return None
    if len(values) > 2 or not all(v.strip().isdigit() for v in values):
        raise ValueError
    sides = [int(v) for v in values]
    return sides[0], sides[-1]


def main(argv=None) -> int:
    args = script_flags.parse(FLAGS, argv, __doc__)
    try:
        input_size = _input_size(args.input_size)
    except ValueError:
        given = ",".join(args.input_size)
        print(f"error: --input_size={given}: give H,W or one side, in pixels", file=sys.stderr)
        return 2
    from cnnx.errors import CnnxError
    from cnnx.export.run import load_run, sidecar_path
    from cnnx.export.serving import export_serving, write_serving

    try:
        run = load_run(args.workdir, args.step, args.ema)
        exported = export_serving(run, input_size=input_size, platforms=args.platforms)
        written = write_serving(exported, run, args.output)
    except CnnxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shape = "x".join(map(str, written["input"]["shape"]))
    print(
        f"wrote {args.output} ({run.name}: uint8 {shape} -> logits, "
        f"{', '.join(written['platforms'])}) and {sidecar_path(args.output)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
