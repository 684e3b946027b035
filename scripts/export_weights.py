"""Write a run's weights for torchvision / timm users: a torch state_dict or safetensors.

    python scripts/export_weights.py --workdir=workdirs/r50 --to=torch --output=r50.pth
    python scripts/export_weights.py --workdir=workdirs/r50 --to=safetensors \
        --output=r50.safetensors --ema
    python scripts/export_weights.py --workdir=workdirs/lenet --to=safetensors \
        --output=lenet.safetensors   # no reference: cnnx's own names

A model with a reference (`scripts/list_models.py` shows it) is written in the reference's
own names and layouts, checked by loading it strictly into a fresh reference module first:

    net = torchvision.models.resnet50(num_classes=10)
    net.load_state_dict(torch.load("r50.pth"))     # or safetensors.torch.load_file(...)

A model without one is written to safetensors under its cnnx names (`params/stem/conv/kernel`).
Beside the weights, `<output>.json` holds the model, the normalisation
(mean / std of pixels / 255), resolution and crop ratio the weights expect, and the run's
config.json. GoogLeNet / Inception v3: build the torch model with transform_input=False
(torchvision's default without pretrained weights) and feed the file's normalisation.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from absl import flags

from cnnx import process_defaults, script_flags

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

FLAGS = flags.FlagValues()
script_flags.define_checkpoint_flags(FLAGS, "export")
flags.DEFINE_enum(
    "to",
    None,
    ("torch", "safetensors"),
    "torch: torch.save of the reference's state_dict; safetensors: the same tensors (cnnx's "
    "own names for a model without a reference).",
    flag_values=FLAGS,
)
flags.DEFINE_string("output", None, "The file to write (local or gs://).", flag_values=FLAGS)
flags.DEFINE_bool(
    "cnnx_names",
    False,
    "safetensors: write cnnx's own names even where the model has a reference.",
    flag_values=FLAGS,
)
for _name in ("to", "output"):
    flags.mark_flag_as_required(_name, flag_values=FLAGS)


def main(argv=None) -> int:
    args = script_flags.parse(FLAGS, argv, __doc__)
    from cnnx.errors import CnnxError
    from cnnx.export.run import load_run, sidecar_path
    from cnnx.export.weights import export_weights

    try:
        run = load_run(args.workdir, args.step, args.ema)
        written = export_weights(run, args.output, args.to, cnnx_names=args.cnnx_names)
    except CnnxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.output} ({run.name}, {written['names']} names, "
        f"{written['num_classes']} classes) and {sidecar_path(args.output)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
