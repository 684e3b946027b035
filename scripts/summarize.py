"""Per-layer summary of a registered model.

  python scripts/summarize.py --model alexnet --image_size 227
  python scripts/summarize.py --model resnet50 --format markdown --memory --speed --batch_size 32

Rows: input C×H×W, filters, kernel, stride, padding, output C×H×W, activation memory (KB),
weights (K), biases, MACs (M), receptive field; then totals and the conventions used.
`--memory` compiles (does not run) an inference and a training step and prints XLA's peak;
`--speed` compiles and times both on the default device.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import flags

from cnnx import process_defaults, script_flags

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

# The keys of cnnx.analysis.summary.FORMATS (kept here so that --help does not import jax).
FORMATS = ("csv", "json", "markdown", "text")

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "model", None, "Registry name (scripts/list_models.py lists them).", flag_values=FLAGS
)
flags.DEFINE_integer(
    "image_size", None, "Input side in pixels (default: the model's own).", flag_values=FLAGS
)
flags.DEFINE_integer(
    "batch_size", 1, "Batch size of the summary and measurements.", flag_values=FLAGS
)
flags.DEFINE_enum("format", "text", FORMATS, "Output format.", flag_values=FLAGS)
flags.DEFINE_bool(
    "memory",
    False,
    "Add the compiled peak memory of the inference and train steps.",
    flag_values=FLAGS,
)
flags.DEFINE_bool(
    "speed", False, "Add measured images/s (compiles and runs both steps).", flag_values=FLAGS
)
flags.DEFINE_integer("repeats", 10, "Timed runs for --speed.", flag_values=FLAGS)
flags.DEFINE_string(
    "output", None, "Write the summary to this file instead of stdout.", flag_values=FLAGS
)
flags.mark_flag_as_required("model", flag_values=FLAGS)


def main(argv=None) -> int:
    args = script_flags.parse(FLAGS, argv, __doc__)
    from cnnx.analysis import summary

    s = summary.summarize(args.model, args.image_size, args.batch_size)
    r = args.image_size or s.input_shape[0]
    if args.memory:
        from cnnx.analysis.memory import compiled_memory_registered

        s.memory = compiled_memory_registered(args.model, r, args.batch_size)
    if args.speed:
        from cnnx.analysis.speed import throughput_registered

        s.speed = throughput_registered(args.model, r, args.batch_size, repeats=args.repeats)
    text = summary.FORMATS[args.format](s)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
