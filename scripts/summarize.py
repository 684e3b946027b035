"""Per-layer summary of a registered model.

  python scripts/summarize.py --model alexnet --resolution 227
  python scripts/summarize.py --model resnet50 --format markdown --memory --speed --batch 32

Rows: input C×H×W, filters, kernel, stride, padding, output C×H×W, activation memory (KB),
weights (K), biases, MACs (M), receptive field; then totals and the conventions used.
`--memory` compiles (does not run) an inference and a training step and prints XLA's peak;
`--speed` compiles and times both on the default device.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnx.analysis import summary
from cnnx.backends.cpu import flags as xla_flags

xla_flags.apply()  # before JAX starts: XLA reads XLA_FLAGS once


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="registry name (scripts: list_models)")
    p.add_argument("--resolution", type=int, default=None, help="default: the spec's")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--format", choices=sorted(summary.FORMATS), default="text")
    p.add_argument("--memory", action="store_true", help="compiled peak memory of the steps")
    p.add_argument("--speed", action="store_true", help="measure images/s (compiles, runs)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs for --speed")
    p.add_argument("--output", default=None, help="write here instead of stdout")
    args = p.parse_args(argv)

    s = summary.summarize(args.model, args.resolution, args.batch)
    r = args.resolution or s.input_shape[0]
    if args.memory:
        from cnnx.analysis.memory import compiled_memory_registered

        s.memory = compiled_memory_registered(args.model, r, args.batch)
    if args.speed:
        from cnnx.analysis.speed import throughput_registered

        s.speed = throughput_registered(args.model, r, args.batch, repeats=args.repeats)
    text = summary.FORMATS[args.format](s)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
