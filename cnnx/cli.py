"""Shared command-line plumbing for train.py / eval.py: friendly flag and override errors."""

import difflib
import re
import sys

from absl import flags


def _suggest(argv: list[str], message: str) -> str:
    """Names the bad `--config.a.b` override and suggests the closest existing key."""
    match = re.search(r"'([^']+)'", message)
    bad = match.group(1) if match else ""
    for arg in argv:
        if not arg.startswith("--config.") or bad not in arg:
            continue
        path = arg[len("--config.") :].split("=", 1)[0]
        config = _load_config(argv)
        section, keys, name = config, [], path.split(".")[-1]
        for part in path.split(".")[:-1]:
            parent = section
            section = section.get(part) if section is not None and hasattr(section, "get") else None
            if section is None:  # an unknown section: suggest among its parent's keys
                section, name = parent, part
                break
        if section is not None and hasattr(section, "keys"):
            keys = list(section.keys())
        close = difflib.get_close_matches(name, keys, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        known = f" Valid keys there: {', '.join(sorted(keys))}." if keys else ""
        return f"unknown config override --config.{path}.{hint}{known}"
    return f"invalid flags: {message}"


def _load_config(argv: list[str]):
    """Loads the --config file named on the command line (for suggestions only)."""
    import importlib.util

    for arg in argv:
        if arg.startswith("--config="):
            path, _, config_arg = arg[len("--config=") :].partition(":")
            try:
                spec = importlib.util.spec_from_file_location("_cnnx_config", path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                return module.get_config(config_arg) if config_arg else module.get_config()
            except Exception:
                return None
    return None


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """`app.run` flags parser that turns override errors into one clear line and exit 2."""
    try:
        return flag_values(argv)
    except flags.Error as e:
        print(f"error: {e}\nPass --helpfull to see all flags.", file=sys.stderr)
        sys.exit(2)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        print(f"error: {_suggest(argv, str(e))}", file=sys.stderr)
        sys.exit(2)


def run_training(config, workdir: str, *, allow_config_change: bool = False) -> int:
    """train.py after its flags: trains, prints the outcome, returns the exit status.

    0: finished (or already finished: one line, results.json kept); 143: preempted (SIGTERM),
    with a checkpoint saved; 2: a `CnnxError` (bad config, missing data, divergence,
    checkpoint trouble, a workdir of another run or in use), printed as one `error:` line.
    """
    from absl import logging

    from cnnx.errors import CnnxError
    from cnnx.train.loop import train_and_evaluate

    try:
        if config.train.fast_linear_probe:
            from cnnx.train import linear_probe

            results = linear_probe.run(config, workdir, allow_config_change=allow_config_change)
        else:
            results = train_and_evaluate(config, workdir, allow_config_change=allow_config_change)
    except CnnxError as e:
        logging.flush()
        print(f"error: {e}", file=sys.stderr)
        return 2
    if results["status"] == "preempted":
        print(f"Preempted at step {results['step']}; checkpoint saved in {workdir}.")
        return 143
    if results.get("already_finished"):
        print(
            f"{workdir} holds a finished run of {results['model']} ({results['step']} steps, "
            f"eval top-1 {results['eval/top1']:.2f}%): nothing to train; its results.json is "
            "kept. Use another --workdir for a new run."
        )
        return 0
    print(
        f"{results['model']}: eval top-1 {results['eval/top1']:.2f}%  "
        f"top-5 {results['eval/top5']:.2f}%  loss {results['eval/loss']:.4f}  "
        f"({results['step']} steps, {results['wall_time_s']:.0f} s)  -> {workdir}/results.json"
    )
    return 0
