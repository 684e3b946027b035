"""The results of many runs in one table, and top-1 against MACs as a plot.

  python scripts/results.py --workdirs=runs/a,runs/b,gs://bucket/sweep/trials
  python scripts/results.py --workdirs=runs --format=csv --output=runs.csv --plot=runs.png

Each path is a workdir (results.json) or a folder searched for them. Columns: run, model,
parameters, MACs per image at the eval resolution, resolution (train/eval px), status, step,
each evaluator's top-1 / top-5 / NLL / ECE ('eval/top1', 'v2_matched/top1', ...), wall time.
Formats: markdown (default), csv, json. Local or gs:// (cnnx.sweeps.compare).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import flags

from cnnx import process_defaults, script_flags

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

# cnnx.sweeps.compare.FORMATS (kept here so that --help imports nothing heavy).
FORMATS = ("markdown", "csv", "json")

FLAGS = flags.FlagValues()
flags.DEFINE_list("workdirs", None, "Workdirs, or folders holding them.", flag_values=FLAGS)
flags.DEFINE_enum("format", "markdown", FORMATS, "Table format.", flag_values=FLAGS)
flags.DEFINE_string("output", None, "Write the table here (default: stdout).", flag_values=FLAGS)
flags.DEFINE_string("plot", None, "Write the top-1 against MACs PNG here.", flag_values=FLAGS)
flags.DEFINE_string("metric", "eval/top1", "The plot's y axis.", flag_values=FLAGS)
flags.DEFINE_bool("macs", True, "Count MACs (traces each run's model).", flag_values=FLAGS)
flags.mark_flag_as_required("workdirs", flag_values=FLAGS)


def main(argv=None) -> int:
    args = script_flags.parse(FLAGS, argv, __doc__)
    from etils import epath

    from cnnx.errors import CnnxError
    from cnnx.sweeps import compare

    try:
        rows = [compare.read_run(w, macs=args.macs) for w in compare.find_runs(args.workdirs)]
    except CnnxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = compare.format_rows(rows, args.format)
    if args.output:
        epath.Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    if args.plot:
        drawn = compare.plot_top1_vs_macs(rows, args.plot, args.metric)
        print(f"-> {drawn}" if drawn else f"no run has MACs and {args.metric}: no plot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
