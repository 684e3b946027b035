"""List registered models: name, family, parameters (reference count), resolution, reference.

python scripts/list_models.py                          # all
python scripts/list_models.py --models='resnet*'       # shell-style patterns, comma-separated
python scripts/list_models.py --family=efficientnet
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from absl import flags

from cnnx import process_defaults, script_flags

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "models", "*", "Comma-separated names or shell-style patterns ('resnet*').", flag_values=FLAGS
)
flags.DEFINE_string(
    "family",
    None,
    "Only this family (e.g. resnet); an unknown one lists the families.",
    flag_values=FLAGS,
)


def main(argv=None) -> int:
    args = script_flags.parse(FLAGS, argv, __doc__)
    from cnnx import models

    families = sorted({models.get_spec(n).family for n in models.list_models()})
    if args.family is not None and args.family not in families:
        print(
            f"error: no family {args.family!r}; the families: {', '.join(families)}",
            file=sys.stderr,
        )
        return 1
    names: list[str] = []
    for pattern in args.models.split(","):
        found = models.list_models(pattern.strip(), family=args.family)
        names += [n for n in found if n not in names]
    if not names:
        where = f" in family {args.family!r}" if args.family else ""
        print(f"error: no model matches {args.models!r}{where}", file=sys.stderr)
        return 1
    print(f"{'name':24} {'family':16} {'params':>13} {'res':>4}  reference")
    for name in names:
        s = models.get_spec(name)
        count = f"{s.param_count:,}" if s.param_count else "-"
        print(f"{name:24} {s.family:16} {count:>13} {s.resolution:>4}  {s.reference or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
