"""The fault matrix: tiny runs that meet one fault each, and how each one ends.

    python scripts/fault_matrix.py                         # every case (~40 min, busy 2 cores)
    python scripts/fault_matrix.py --list
    python scripts/fault_matrix.py --categories=signals,config --output=faults.json
    python scripts/fault_matrix.py --cases='sigkill_*,gcs_*' --timeout_s=90

Each case (the table in `scripts/faults/`: training.py, storage.py, inputs.py) starts a tiny
run (LeNet-5 on digits, a few steps) in its own temporary folder, injects one fault (a signal
at a step or during a save, two processes stopped at different steps, a full or read-only disk,
a storage emulator outage, a PostgreSQL restart, a damaged file, a bad folder dataset or
config value...) and classifies how it ended (`scripts/faults/core.py`):

  survived  one `error:` line saying what is wrong and what to do, or a correct continuation
            (a resume whose every step's loss and final evaluation equal, bit for bit,
            the uninterrupted run's), the workdir intact;
  lost      something already written (checkpoint, results, records, trials) lost or damaged;
  unclear   a traceback, a hang (the per-case timeout), a native crash, or no message;
  wrong     a silent wrong result.

Prints one row per case (case, category, outcome, evidence) and the figures: tried, survived,
lost, unclear, wrong. Exit status 0 whatever the outcomes (the figures are the result), 2 for
a bad flag. Runs as root (tmpfs mounts for full and read-only disks); the cases that need a
service (the Cloud Storage emulator, PostgreSQL's server binaries) start it on first use.
"""

import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from absl import flags

from cnnx import script_flags

FLAGS = flags.FlagValues()
_LIST = flags.DEFINE_bool(
    "list", False, "List the cases (name, category, setup, fault) and exit.", flag_values=FLAGS
)
_CASES = flags.DEFINE_list("cases", [], "Case names or globs (default: all).", flag_values=FLAGS)
_CATEGORIES = flags.DEFINE_list(
    "categories", [], "Only these categories (default: all).", flag_values=FLAGS
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Write every case's row and the figures as JSON.", flag_values=FLAGS
)
_TIMEOUT = flags.DEFINE_float(
    "timeout_s",
    None,
    "Per-case limit in seconds; a case past it is a hang (default: the case's own).",
    flag_values=FLAGS,
)
_KEEP = flags.DEFINE_bool(
    "keep", False, "Keep the cases' temporary folders (printed).", flag_values=FLAGS
)


def main(argv: list[str] | None = None) -> int:
    script_flags.parse(FLAGS, argv, __doc__)
    from scripts.faults import CASES
    from scripts.faults.core import Shared, figures, run_case, select

    known = {c.category for c in CASES}
    if bad := sorted(set(_CATEGORIES.value) - known):
        print(f"error: unknown categories {bad}; known: {sorted(known)}", file=sys.stderr)
        return 2
    cases = select(CASES, _CASES.value, _CATEGORIES.value)
    if not cases:
        print(f"error: no case matches --cases={','.join(_CASES.value)}", file=sys.stderr)
        return 2
    if _LIST.value:
        for c in cases:
            print(f"{c.name:28} {c.category:10} {c.setup} | {c.fault}")
        print(f"{len(cases)} cases")
        return 0
    root = tempfile.mkdtemp(prefix="cnnx-faults-")
    shared = Shared(root)
    rows = []
    try:
        for case in cases:
            row = run_case(case, shared, root, _TIMEOUT.value)
            rows.append(row)
            print(
                f"{row['case']:28} {row['category']:10} {row['outcome']:9} "
                f"{row['seconds']:5.0f}s  {row['evidence']}",
                flush=True,
            )
    finally:
        shared.close()
        if _KEEP.value:
            print(f"case folders kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    result = figures(rows)
    print(" ".join(f"{k} {v}" for k, v in result.items()))
    if _OUTPUT.value:
        with open(_OUTPUT.value, "w") as f:
            json.dump({"figures": result, "cases": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
