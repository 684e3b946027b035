"""Shared command-line plumbing for train.py / eval.py: friendly flag and override errors, and
loading config and sweep files (`load_config_module`)."""

import ast
import difflib
import hashlib
import importlib.util
import os
import re
import sys
from typing import NoReturn

from absl import flags

from cnnx.script_flags import HELP_FLAGS

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIGS = os.path.join(_REPO_ROOT, "configs")


CONFIG_HELP = (
    "Config file, path[:arg] (e.g. configs/resnet.py:50,smoke): its get_config(arg) returns "
    "an ml_collections ConfigDict. The schema (every section, key and default) is "
    "cnnx/config_schema.py: base_config() for the keys, _RULES for the allowed values. "
    "Override any key on the command line with --config.<section>.<key>=<value>, e.g. "
    "--config.train.batch_size=256 --config.optim.base_lr=0.1 "
    "--config.data.mean='(0.5,)'; values are parsed as Python literals, unknown keys are "
    "refused with the valid ones. --print_config prints the result and exits."
)


def print_config(config) -> int:
    """train.py --print_config: prints the config (file + overrides) as the JSON a run saves
    in config.json, once it passes the schema check (`cnnx.config_schema.validate`) and names
    a registered model.

    Returns:
      0 after printing it to stdout; 2 after one `error:` line when it is invalid.
    """
    from cnnx import models
    from cnnx.config_schema import validate
    from cnnx.errors import CnnxError

    try:
        validate(config)
        models.get_spec(config.model.name)  # unknown model: the registry's message
    except (CnnxError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(config.to_json_best_effort(indent=2, sort_keys=True))
    return 0


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
    for arg in argv:
        if arg.startswith("--config="):
            try:
                module, config_arg = load_config_module(arg[len("--config=") :])
                return module.get_config(config_arg) if config_arg else module.get_config()
            except Exception:
                return None
    return None


def resolve_config_path(path: str) -> str:
    """A config file's path as given, or relative to the repository root when not found as
    given.

    Raises:
      ConfigError: found in neither place (`config_not_found`'s message).
    """
    if os.path.exists(path):
        return path
    candidate = os.path.join(_REPO_ROOT, path)
    if os.path.exists(candidate):
        return candidate
    from cnnx.errors import ConfigError

    raise ConfigError(f"{config_not_found(path)} (Looked here and under {_REPO_ROOT}.)")


def load_config_module(ref: str):
    """Imports a config or sweep file given as `path[:arg]`: (module, arg or None).

    Each file is imported under its own module name (a hash of its absolute path), so two
    files loaded in one process do not replace each other.

    Raises:
      ConfigError: the file does not exist (`resolve_config_path`).
    """
    path, _, arg = ref.partition(":")
    path = resolve_config_path(path)
    name = "_cnnx_cfg_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, (arg or None)


def _is_config_file(path: str) -> bool:
    """A config file defines `get_config` (configs/common.py, the shared kit, does not)."""
    if not path.endswith(".py") or os.path.basename(path).startswith("_"):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return False
    return "def get_config(" in text or "def get_sweep(" in text


def config_not_found(path: str) -> str:
    """The message for a config file that does not exist: close names and the files there.

    `configs/resnet50.py` suggests `configs/resnet.py:50` (variants are args).
    """
    folder = os.path.dirname(path)
    if not (folder and os.path.isdir(folder)):  # a bare name or a folder that is not there
        folder = os.path.relpath(_CONFIGS) if os.path.isdir(_CONFIGS) else "."
    entries = sorted(os.listdir(folder))
    files = [f for f in entries if _is_config_file(os.path.join(folder, f))]
    folders = [f"{f}/" for f in entries if os.path.isdir(os.path.join(folder, f))]
    folders = [f for f in folders if not f.startswith(("_", "."))]
    name = os.path.basename(path)
    guesses = []
    split = re.match(r"([A-Za-z_]+?)_?(\d\w*)\.py$", name)  # resnet50.py -> resnet.py:50
    if split and f"{split.group(1)}.py" in files:
        guesses.append(f"{os.path.join(folder, split.group(1) + '.py')}:{split.group(2)}")
    base, _, variant = name.removesuffix(".py").rpartition("_")  # efficientnet_b3.py
    if not guesses and base and f"{base}.py" in files:
        guesses.append(f"{os.path.join(folder, base + '.py')}:{variant}")
    close = difflib.get_close_matches(name, files, n=3, cutoff=0.7)
    for f in close:  # a file already suggested with its variant is not named again
        path_f = os.path.join(folder, f)
        if len(guesses) < 3 and not any(g.startswith(f"{path_f}:") for g in guesses):
            guesses.append(path_f)
    hint = f" Did you mean {' or '.join(guesses)}?" if guesses else ""
    listing = ", ".join(files + folders) or "none"
    return f"config file {path} not found.{hint} Configs in {folder}/: {listing}."


def _config_arg_help(path: str) -> str:
    """The 'arg: ...' sentence of a config file's docstring (what its get_config takes)."""
    try:
        with open(path) as f:
            doc = ast.get_docstring(ast.parse(f.read())) or ""
    except (OSError, SyntaxError, ValueError):
        return ""
    for paragraph in doc.split("\n\n"):
        text = " ".join(paragraph.split())
        if text.startswith("arg:"):
            return f"{path} takes {text.split('. ')[0].rstrip('.')}."
    return ""


def _config_error(message: str) -> str | None:
    """One line for absl's "Error whilst parsing config file" (a get_config that raised),
    which carries the whole traceback; None for other flag errors."""
    match = re.search(r"flag --(\S+?)=(.*?): Error whilst parsing config file", message)
    if not match:
        return None
    lines = [line for line in message.splitlines() if line.strip()]
    cause = re.sub(r"^\w+(Error|Exception): ", "", lines[-1].strip())
    value = match.group(2)
    takes = _config_arg_help(value.split(":", 1)[0])
    return f"--{match.group(1)}={value}: {cause.rstrip('.')}.{' ' + takes if takes else ''}"


def _config_flag_names(flag_values: flags.FlagValues) -> list[str]:
    from ml_collections.config_flags import config_flags

    parser = config_flags.ConfigFileFlagParser
    return [name for name in flag_values if isinstance(flag_values[name].parser, parser)]


def _missing_config_file(argv: list[str], flag_values: flags.FlagValues) -> str | None:
    """Checks the path of every config-file flag on the command line before absl loads it."""
    for name in _config_flag_names(flag_values):
        for i, arg in enumerate(argv[1:], start=1):
            if arg.startswith(f"--{name}="):
                value = arg.split("=", 1)[1]
            elif arg == f"--{name}" and i + 1 < len(argv):
                value = argv[i + 1]
            else:
                continue
            path = value.split(":", 1)[0]
            if not os.path.isfile(path):
                return config_not_found(path)
    return None


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """`app.run` flags parser that turns flag, config-file and override errors into one clear
    line and exit 2: a missing config file lists the configs there, a config arg its
    get_config refuses names the args it takes, a misspelled override the keys that exist."""
    missing = _missing_config_file(argv, flag_values)
    if missing:
        _fail(missing)
    try:
        rest = flag_values(argv)
    except SystemExit as e:
        # absl prints the usage for --help / --helpfull, then exits 1; asking is no error.
        if e.code == 1 and any(a.split("=")[0] in HELP_FLAGS for a in argv[1:]):
            raise SystemExit(0) from None
        raise
    except flags.Error as e:
        _fail(_config_error(str(e)) or f"{e}\nPass --helpfull to see all flags.")
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        _fail(_suggest(argv, str(e)))
    for name in _config_flag_names(flag_values):  # a config that failed to load (IOError)
        value = flag_values[name].value
        if type(value).__name__ == "_ErrorConfig":
            _fail(f"--{name}: {' '.join(str(value._error).split())}")
    return rest


def start_process() -> int | None:
    """What every entry point does once its flags are parsed: logging and `jax.distributed` from
    the shared multi-process flags (`cnnx.train.distributed.define_flags`). TensorFlow is not
    imported: the data that needs it imports it (`cnnx.process_defaults.import_tensorflow`,
    which keeps it off the accelerators).

    Returns:
      None when the process is ready; 2 after printing one `error:` line when
      `jax.distributed` cannot start (bad or incomplete multi-process flags).
    """
    from cnnx.errors import CnnxError
    from cnnx.train import distributed, logs

    logs.configure()
    try:
        distributed.initialize_from_flags()
    except CnnxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return None


def distillation_macs_logged(config, exp=None) -> dict | None:
    """With distillation, the step's forward MACs per training image, logged (student,
    teacher, total: `cnnx.analysis.flops.distillation_macs`); None without.

    Args:
      config: the run's config.
      exp: its `cnnx.train.experiment.Experiment` (default: `setup(config)`).
    """
    if config.train.get("distill", "none") == "none":
        return None
    from absl import logging

    from cnnx.analysis.flops import distillation_macs
    from cnnx.train.distill import teacher_name
    from cnnx.train.experiment import setup

    exp = exp or setup(config)
    macs = distillation_macs(config, exp)
    logging.info(
        "forward MACs per training image (%d px): student %s %s + teacher %s %s = %s",
        exp.image_size,
        exp.spec.name,
        f"{macs['student']:,}",
        teacher_name(config),
        f"{macs['teacher']:,}",
        f"{macs['total']:,}",
    )
    return macs


def run_training(config, workdir: str, *, allow_config_change: bool = False) -> int:
    """train.py after its flags: trains, prints the outcome, returns the exit status.

    0: finished (or already finished: one line, results.json kept); 143: preempted (SIGTERM),
    with a checkpoint saved; 2: a `CnnxError` (bad config, missing data, divergence,
    checkpoint trouble, a workdir of another run or in use), printed as one `error:` line;
    130: interrupted (Ctrl-C, SIGINT), one `error:` line.
    """
    from absl import logging

    from cnnx.errors import CnnxError
    from cnnx.train.loop import train_and_evaluate

    try:
        if config.train.fast_linear_probe:
            from cnnx.train import linear_probe

            results = linear_probe.run(config, workdir, allow_config_change=allow_config_change)
        else:
            results = train_and_evaluate(
                config,
                workdir,
                allow_config_change=allow_config_change,
                train_macs=distillation_macs_logged(config),
            )
    except CnnxError as e:
        logging.flush()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: the user's own stop, not a fault to trace back
        logging.flush()
        print(
            f"error: interrupted (Ctrl-C): {workdir} keeps the checkpoints saved so far (a save "
            "that was under way is left out); run the same command to resume from the newest. "
            "To stop at a step with a checkpoint of it, send SIGTERM instead.",
            file=sys.stderr,
        )
        return 130
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
    from cnnx.evaluate.metrics import format_metrics

    print(
        f"{results['model']}: eval {format_metrics(results)}  "
        f"({results['step']} steps, {results['wall_time_s']:.0f} s)  -> {workdir}/results.json"
        + (f"  [smoke run: {config.smoke}; not a result]" if config.smoke else "")
    )
    return 0
