"""absl flags for the tools in scripts/: one `FlagValues` per script, one naming scheme.

Every script defines its flags on its own `FLAGS = flags.FlagValues()` (so that several
scripts can be loaded in one process, as the tests do) and calls `parse(FLAGS, argv, __doc__)`
first thing in `main`. The names follow the field: `--workdir` (a run directory), `--model` /
`--models`, `--image_size`, `--batch_size`, `--output` (the file or folder written). Only
absl is imported here, so `--help` answers before jax, TensorFlow or torch load.
"""

import sys
import types

from absl import flags

# The spellings of absl's help flags (train.py, eval.py, fixres.py parse through absl itself).
HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def usage(flag_values: flags.FlagValues, doc: str | None) -> str:
    """The `--help` text: the script's docstring, then every flag with its help and default."""
    listing = flag_values.get_help(include_special_flags=False)
    return f"{(doc or '').strip()}\n\nflags:\n{listing}\n"


def parse(
    flag_values: flags.FlagValues,
    argv: list[str] | None,
    doc: str | None,
    *,
    program: str | None = None,
) -> types.SimpleNamespace:
    """Parses a script's command line with absl.

    Args:
      flag_values: the script's own flags.
      argv: the arguments without the program name (None: `sys.argv[1:]`).
      doc: the script's docstring, printed by `--help`.
      program: the name shown in messages (default: `sys.argv[0]`).

    Returns:
      A namespace with every flag's value by name (as argparse gives).

    Raises:
      SystemExit: 0 after printing the help for `--help`; 2 after one `error:` line (absl's
        message, e.g. "Unknown command line flag 'out'") for a bad or missing flag or a
        stray positional argument.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in HELP_FLAGS for a in argv):
        print(usage(flag_values, doc))
        raise SystemExit(0)
    flag_values.unparse_flags()  # a second parse in one process starts from the defaults
    try:
        rest = flag_values([program or sys.argv[0], *argv])
    except flags.Error as e:
        _fail(str(e))
    if len(rest) > 1:
        _fail(f"unexpected arguments {rest[1:]}: every input is a --flag")
    return types.SimpleNamespace(**flag_values.flag_values_dict())


def define_checkpoint_flags(flag_values: flags.FlagValues, what: str) -> None:
    """`--workdir` (required), `--step` and `--ema`: which checkpoint of a run a script reads.

    Args:
      flag_values: the script's own flags.
      what: what the script does with it, for the help ("export", "evaluate").
    """
    flags.DEFINE_string(
        "workdir", None, f"The cnnx run directory to {what}.", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "step", None, "Checkpoint step (default: the newest).", flag_values=flag_values
    )
    flags.DEFINE_bool(
        "ema",
        False,
        f"{what.capitalize()} the EMA weights instead of the raw ones.",
        flag_values=flag_values,
    )
    flags.mark_flag_as_required("workdir", flag_values=flag_values)


def _fail(message: str):
    print(f"error: {message}\nPass --help to see the flags.", file=sys.stderr)
    raise SystemExit(2)
