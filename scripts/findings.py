"""The findings suite: classic experiments of the field rerun, each with a verdict and a figure.

    python scripts/findings.py --list
    python scripts/findings.py --finding=degradation --workdir=workdirs/findings
    python scripts/findings.py --all --scale=small --workdir=workdirs/findings
    python scripts/findings.py --report --workdir=workdirs/findings --output=docs/findings.md

Each finding (cnnx/findings) trains its runs through the real trainer, each in its own workdir
under DIR/runs/ (an interrupted suite resumes: finished runs are kept, interrupted ones go on
from their newest checkpoint), measures them, decides `holds`, `does not hold at this scale`
or `inconclusive` (the rule: cnnx/findings/verdict.py), and writes DIR/findings.json and
DIR/<finding>.png. `--report` turns DIR into a Markdown page with the figures (after the runs
when given with --finding/--all). docs/findings.md is that page at the small scale:

    python scripts/findings.py --all --scale=small --workdir=workdirs/findings \
        --report --output=docs/findings.md

Scales: `small` (the bundled digits, CPU; each finding within about 20 minutes and the suite
within 2 hours on a quiet 2-core machine), `paper` (CIFAR-10 / ImageNet through TFDS and the
papers' recipes: an accelerator's job), `smoke` (a few steps per run: checks the machinery).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags

from cnnx import process_defaults, script_flags

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

FLAGS = flags.FlagValues()
flags.DEFINE_list(
    "finding", [], "Finding(s) to run, comma-separated (see --list).", flag_values=FLAGS
)
flags.DEFINE_bool("all", False, "Run every finding, in the suite's order.", flag_values=FLAGS)
flags.DEFINE_bool("list", False, "List the findings and exit.", flag_values=FLAGS)
flags.DEFINE_enum(
    "scale", "small", ["small", "paper", "smoke"], "Data and budget (see above).", flag_values=FLAGS
)
flags.DEFINE_list(
    "seeds",
    [],
    "Seeds of the repeated runs (default: small 0,1; paper and smoke 0).",
    flag_values=FLAGS,
)
flags.DEFINE_string("workdir", None, "The findings directory (DIR).", flag_values=FLAGS)
flags.DEFINE_bool("report", False, "Write the Markdown page of DIR.", flag_values=FLAGS)
flags.DEFINE_string(
    "output", None, "The page --report writes (default DIR/findings.md).", flag_values=FLAGS
)
flags.DEFINE_string(
    "note", "", "A paragraph under the page's title (the machine, its load...).", flag_values=FLAGS
)
flags.DEFINE_bool("verbose", False, "Show the trainer's log lines.", flag_values=FLAGS)


def _list() -> int:
    from cnnx.findings import registry

    for i, name in enumerate(registry.names(), 1):
        f = registry.get(name)
        print(f"{i}. {name:<15} {f.title}\n   {f.source}\n   small scale: {f.budget}")
    return 0


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    args = script_flags.parse(FLAGS, argv, __doc__)
    if args.list:
        return _list()
    names = args.finding
    if not (names or args.all or args.report):
        return _error("pass --finding=NAME, --all, --report or --list (--help: the flags)")
    if not args.workdir:
        return _error("--workdir is required: the findings directory")
    try:
        seeds = tuple(int(s) for s in args.seeds)
    except ValueError:
        return _error(f"--seeds={','.join(args.seeds)}: comma-separated integers")
    from absl import logging

    from cnnx.errors import CnnxError
    from cnnx.findings import registry, report, suite
    from cnnx.findings.registry import Scale

    try:
        for name in names:
            registry.get(name)  # unknown names fail before anything runs
        if args.all:
            names = registry.names()
        if names:
            from cnnx.train import logs

            logs.configure()
            logging.set_verbosity(logging.INFO if args.verbose else logging.WARNING)
            suite.run_all(names, Scale(args.scale, seeds), args.workdir, log=print)
        if args.report:
            print(f"wrote {report.render(args.workdir, args.output, args.note)}")
    except (CnnxError, FileNotFoundError) as e:
        return _error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
