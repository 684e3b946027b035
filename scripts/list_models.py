"""List registered models: name, family, parameters (reference count), resolution, reference.

python scripts/list_models.py               # all
python scripts/list_models.py 'resnet*'     # shell-style pattern
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cnnx.backends.cpu import flags as xla_flags

xla_flags.apply()  # before JAX starts: XLA reads XLA_FLAGS once


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pattern", nargs="?", default="*")
    parser.add_argument("--family", default=None)
    args = parser.parse_args(argv)
    from cnnx import models

    names = models.list_models(args.pattern, family=args.family)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    print(f"{'name':24} {'family':16} {'params':>13} {'res':>4}  reference")
    for name in names:
        s = models.get_spec(name)
        count = f"{s.param_count:,}" if s.param_count else "-"
        print(f"{name:24} {s.family:16} {count:>13} {s.resolution:>4}  {s.reference or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
