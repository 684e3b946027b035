"""A run's workdir: its layout, atomic writes and its identity (config.json); its lock is
`cnnx.train.lock`.

One workdir holds one run::

    <workdir>/checkpoints/<step>/   orbax checkpoints (cnnx.train.checkpoint)
    <workdir>/config.json           the run's config: its identity
    <workdir>/config_history.jsonl  changes accepted with --allow_config_change
    <workdir>/train_metrics.jsonl   one line per logged step (with the cumulative wall time)
    <workdir>/results.json          the final (or preempted) results
    <workdir>/lock                  the training process that owns the workdir (cnnx.train.lock)
    <workdir>/profile/              jax.profiler traces

Every path goes through `etils.epath`, so a workdir may be local or on gs://. gs:// goes
through gcsfs (the entry points set `EPATH_USE_TF=false`, `cnnx.process_defaults`) and orbax's
arrays through tensorstore: both follow the standard credentials and, for a local emulator,
`STORAGE_EMULATOR_HOST` (gcsfs) and `TENSORSTORE_GCS_HTTP_URL` (tensorstore). TensorBoard
events are written by TensorFlow, whose GCS client has no endpoint setting: for a gs:// workdir
they are written locally and copied into the workdir at each flush
(`cnnx.train.metrics_log.metric_writer`).
"""

import functools
import io
import json
import os
import socket
import time
import urllib.parse

import ml_collections
import numpy as np
from absl import logging
from etils import epath

from cnnx.errors import ConfigError, WorkdirError

CHECKPOINTS = "checkpoints"
CONFIG = "config.json"
CONFIG_HISTORY = "config_history.jsonl"
METRICS = "train_metrics.jsonl"
# One line per evaluation: {"step", "<evaluator>/top1", ...} (TensorBoard holds them too).
EVAL_METRICS = "eval_metrics.jsonl"
RESULTS = "results.json"
LOCK = "lock"
PROFILE = "profile"


def _join(workdir: str, name: str) -> str:
    return os.fspath(epath.Path(workdir) / name)


def checkpoints_dir(workdir: str) -> str:
    return _join(workdir, CHECKPOINTS)


def config_path(workdir: str) -> str:
    return _join(workdir, CONFIG)


def config_history_path(workdir: str) -> str:
    return _join(workdir, CONFIG_HISTORY)


def metrics_path(workdir: str) -> str:
    return _join(workdir, METRICS)


def eval_metrics_path(workdir: str) -> str:
    return _join(workdir, EVAL_METRICS)


def results_path(workdir: str) -> str:
    return _join(workdir, RESULTS)


def lock_path(workdir: str) -> str:
    return _join(workdir, LOCK)


def profile_dir(workdir: str) -> str:
    return _join(workdir, PROFILE)


def is_remote(path: str) -> bool:
    """Whether `path` is a URL (gs://bucket/dir) rather than a local path: the one test for it."""
    return "://" in os.fspath(path)


# --- Writing ---------------------------------------------------------------------------------


def write_text_atomic(path: str, text: str) -> None:
    """Writes a whole file so that readers see the old or the new content, never a torn one.

    Local paths: a temporary file beside it, fsync, `os.replace`. gs:// objects are replaced
    atomically by the store itself.
    """
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: str, data: bytes) -> None:
    """`write_text_atomic` for bytes."""
    if is_remote(path):
        epath.Path(path).write_bytes(data)
        return
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(path: str, obj) -> None:
    """`obj` as indented JSON, atomically (non-JSON values written with `str`)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def arrays_path(json_path: str) -> str:
    """Where the arrays of a results JSON go: beside it, `.npz` for `.json`."""
    return json_path.removesuffix(".json") + ".npz"


def write_npz_atomic(path: str, arrays: dict) -> None:
    """`arrays` ({name: array}) as a compressed .npz (`numpy.savez_compressed`), whole or not
    at all: per-class figures and confusion matrices stay out of the JSON, compact and exact."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    write_bytes_atomic(path, buffer.getvalue())


def append_line(path: str, record: dict) -> None:
    """Appends `record` as one JSON line (gs:// objects cannot be appended to: rewritten)."""
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    p = epath.Path(path)
    if is_remote(path):
        p.write_text((p.read_text() if p.exists() else "") + line)
        return
    with p.open("a") as f:
        f.write(line)


def read_json(path: str) -> dict | None:
    """A JSON file's object, or None when it is absent or unreadable (torn, not JSON)."""
    p = epath.Path(path)
    try:
        obj = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def read_lines(path: str) -> list[dict]:
    """The records of a JSON Lines file; torn or non-object lines skipped."""
    p = epath.Path(path)
    if not p.exists():
        return []
    records = []
    for line in p.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def keep_metrics_until(path: str, step: int) -> None:
    """Drops the lines of a metrics jsonl (`train_metrics.jsonl`, `eval_metrics.jsonl`) after
    `step`: those of a run killed after its last checkpoint (and a torn last line), which the
    resumed run writes again."""
    p = epath.Path(path)
    if not p.exists():
        return
    kept = []
    for line in p.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))


def finished_results(workdir: str, total_steps: int) -> dict | None:
    """The results.json of a run completed at `total_steps` in `workdir`, or None."""
    results = read_json(results_path(workdir))
    if results and results.get("status") == "completed" and results.get("step") == total_steps:
        return results
    return None


def describe_write_error(error: BaseException) -> tuple[str, bool]:
    """(reason, whether the disk is full) of a failed write, from any layer's error text.

    OSError (Python file code), tensorstore's "[os_error_code=28]" and TensorFlow's
    OpError ("...; No space left on device") are all recognised.
    """
    text = " ".join(str(error).split())
    errno = getattr(error, "errno", None)
    if isinstance(error, OSError) and errno:
        return f"{error.strerror} (errno {errno})", errno in _DISK_FULL
    for code in _DISK_FULL:
        if f"os_error_code={code}" in text or f"os_error_code='{code}'" in text:
            return f"{os.strerror(code)} (errno {code})", True
    for code in _DISK_FULL:
        if os.strerror(code) in text:
            return f"{os.strerror(code)} (errno {code})", True
    return f"{type(error).__name__}: {text[:400]}", False


_DISK_FULL = (27, 28, 122)  # EFBIG, ENOSPC, EDQUOT


# --- Identity: the saved config ----------------------------------------------------------------

# Keys a run may change between segments without changing what it computes: where and how
# often things are logged, evaluated or saved, how the state is laid out on devices, where the
# same data is read from. Every other key is part of the run's identity.
IDENTITY_FREE = {
    "train.log_every_steps": "when train metrics are logged",
    "train.profile_steps": "profiling",
    "train.on_nonfinite": "what happens if a step diverges (no effect on finite steps)",
    "eval.batch_size": "evaluation batching (metrics are exact sums)",
    "eval.every_steps": "how often the run evaluates (identity with schedule=plateau)",
    "evals.*": "which further test sets are evaluated, how and how often (evals.eval: as "
    "eval.every_steps)",
    "ckpt.every_steps": "how often checkpoints are written (resume is exact at any step)",
    "ckpt.max_to_keep": "how many checkpoints are kept",
    "ckpt.asynchronous": "whether saves run in the background",
    "data.data_dir": "where the same dataset is read from",
    "data.download": "whether TFDS may download",
    "data.cache": "in-memory caching of the same examples",
    "model.remat": "recomputing activations (memory, not math)",
    "model.remat_policy": "which activations are recomputed",
    "mesh.*": "the device layout (checkpoints restore onto any mesh)",
    "smoke": "the words that mark a smoke run in its summary line",
}


def _identity_free(key: str, new: dict) -> bool:
    plateau_input = key == "eval.every_steps" or key.startswith("evals.eval.")
    if plateau_input and new.get("schedule.name") == "plateau":
        return False  # the plateau schedule decides the learning rate at each evaluation
    section = key.split(".")[0]
    return key in IDENTITY_FREE or f"{section}.*" in IDENTITY_FREE


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def _as_json(config) -> dict:
    if isinstance(config, ml_collections.ConfigDict):
        return json.loads(config.to_json_best_effort(sort_keys=True))
    return json.loads(json.dumps(config, default=str))


def config_changes(saved: dict, config) -> dict[str, tuple]:
    """The identity keys whose value differs between a saved config and `config`.

    Both are read over today's schema defaults, so a key added to the schema since the run
    was saved counts as its default, and a recipe lacking an optional key as the default too.

    Returns:
      {dotted key: (saved value, new value)}, sorted by key; empty when it is the same run.
    """
    from cnnx.config_schema import base_config

    defaults = _flatten(_as_json(base_config()))
    old = {**defaults, **_flatten(_as_json(saved))}
    new = {**defaults, **_flatten(_as_json(config))}
    if new.get("model.dtype") == "auto":  # 'auto' continues a run in its recorded dtype
        new["model.dtype"] = old.get("model.dtype")
    missing = "<unset>"
    return {
        k: (old.get(k, missing), new.get(k, missing))
        for k in sorted(old.keys() | new.keys())
        if old.get(k, missing) != new.get(k, missing) and not _identity_free(k, new)
    }


def load_saved_config(workdir: str) -> dict | None:
    """The config.json of a workdir as a dict; None if there is none.

    Raises:
      WorkdirError: config.json exists but cannot be parsed (the run's identity is unknown).
    """
    p = epath.Path(config_path(workdir))
    if not p.exists():
        return None
    saved = read_json(os.fspath(p))
    if saved is None:
        raise WorkdirError(
            f"{p} is unreadable (truncated or not JSON), so which run this workdir holds is "
            "unknown; nothing was changed. Restore it from a copy; to train, use another "
            "--workdir; to evaluate, pass the run's config with --config=configs/...py (plus "
            "its overrides)."
        )
    return saved


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a workdir was trained with, over today's schema (new fields: defaults).

    Raises:
      ConfigError: the workdir has no config.json.
      WorkdirError: its config.json is unreadable.
    """
    from cnnx.config_schema import base_config

    saved = load_saved_config(workdir)
    if saved is None:
        raise ConfigError(
            f"{config_path(workdir)} not found: is {workdir!r} a cnnx workdir? "
            "Pass --config explicitly."
        )
    config = base_config()
    for section, values in saved.items():
        if isinstance(values, dict) and section in config:
            for key, value in values.items():
                config[section][key] = tuple(value) if isinstance(value, list) else value
        else:
            config[section] = values
    return config


def _show(value) -> str:
    return json.dumps(value, default=str)


def check_same_run(workdir: str, config, *, allow_change: bool = False) -> dict[str, tuple]:
    """Refuses a config that would continue another run in `workdir`.

    Reads only; writes nothing (the change is recorded by `record_config_change` once the
    run goes ahead).

    Args:
      workdir: the run's directory.
      config: the config this start asks for.
      allow_change: continue anyway (--allow_config_change).

    Returns:
      The identity changes ({key: (old, new)}); empty for the same run or a new workdir.

    Raises:
      WorkdirError: the saved config differs in an identity key and `allow_change` is off.
    """
    saved = load_saved_config(workdir)
    if saved is None:
        return {}
    changes = config_changes(saved, config)
    if changes and not allow_change:
        listed = "; ".join(f"{k}: {_show(a)} -> {_show(b)}" for k, (a, b) in changes.items())
        raise WorkdirError(
            f"{workdir} holds another run: its config.json differs in {listed}. Nothing was "
            "changed. Start the new run in another --workdir, or continue this one with the "
            "new values on purpose with --allow_config_change (recorded in "
            f"{CONFIG_HISTORY})."
        )
    return changes


def record_config_change(workdir: str, changes: dict[str, tuple], step: int) -> None:
    """Appends an accepted config change to `<workdir>/config_history.jsonl` (and logs it)."""
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "step": step,
        "changes": {k: {"old": a, "new": b} for k, (a, b) in changes.items()},
    }
    append_line(config_history_path(workdir), record)
    logging.warning(
        "Continuing %s at step %d with a changed config (%s); recorded in %s.",
        workdir,
        step,
        ", ".join(changes),
        CONFIG_HISTORY,
    )


def check_folder(path: str, *, create: bool = False, flag: str = "--workdir") -> None:
    """Fails at once, with one line, when `path` cannot be used as a folder.

    Args:
      path: the folder (a workdir, or where an output file goes). gs:// paths are not
        checked (object stores have no files in the way and no permissions to read here).
      create: make it (and its parents) when missing, and require it to be writable.
      flag: how the user named the path, for the message.

    Raises:
      WorkdirError: `path` or one of its parents is an existing file; with `create`, the
        folder cannot be made or written (read-only file system, permissions); a gs://
        `path` whose Cloud Storage endpoint cannot be reached (`check_reachable`).
    """
    if is_remote(path):
        check_reachable(path)
        return
    full = os.path.abspath(path)
    existing = full
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is an existing file" if existing == full else f"is under a file ({existing})"
        raise WorkdirError(f"{flag}={path} {where}, not a folder; pass a folder.")
    if not create:
        return
    try:
        os.makedirs(full, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"Cannot create {flag}={path}: {e.strerror}.") from None
    if not os.access(full, os.W_OK):
        readonly = os.statvfs(full).f_flag & os.ST_RDONLY
        why = "a read-only file system" if readonly else "no write permission"
        raise WorkdirError(f"{flag}={path} is not writable ({why}); pass a writable folder.")


# --- Cloud Storage: reachable at all? ----------------------------------------------------------

REACH_TIMEOUT_S = 5.0


def _endpoints() -> list[str]:
    """The Cloud Storage endpoints (host:port) the gs:// clients will use (module docstring)."""
    urls = [os.environ.get(v) for v in ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL")]
    urls = [u if "://" in u else f"http://{u}" for u in urls if u] or [
        "https://storage.googleapis.com"
    ]
    out = []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        out.append(f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}")
    return list(dict.fromkeys(out))


@functools.cache
def _unreachable(endpoint: str) -> str | None:
    host, port = endpoint.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


def check_reachable(path: str) -> None:
    """Fails at once when the Cloud Storage endpoint of a gs:// `path` cannot be reached.

    Without this, gcsfs retried for about a minute and ended in a 159-line aiohttp traceback
    that named neither the endpoint nor the credentials. One TCP connection per endpoint and
    process (`REACH_TIMEOUT_S`); credentials are the clients' own business (a refused write
    is reported where it happens, e.g. `cnnx.train.lock`).

    Raises:
      WorkdirError: naming the endpoint, the variables that set it and the credentials.
    """
    for endpoint in _endpoints():
        if (why := _unreachable(endpoint)) is not None:
            raise WorkdirError(
                f"Cannot reach Cloud Storage at {endpoint} for {path} ({why}, "
                f"{REACH_TIMEOUT_S:.0f} s timeout). Check the network (a local emulator: "
                "STORAGE_EMULATOR_HOST and TENSORSTORE_GCS_HTTP_URL) and the credentials "
                "(gcloud auth application-default login, or GOOGLE_APPLICATION_CREDENTIALS)."
            )
