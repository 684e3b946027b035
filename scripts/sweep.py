"""Run a sweep on Optuna: the trials of a sweep file, shared by any number of workers.

    python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py:digits --workdir=DIR
    python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py --workdir=DIR --dry_run
    python scripts/sweep.py --sweep=... --workdir=DIR --storage=postgresql://USER:PW@HOST/DB

Workers: start the same command several times (on one machine, or on hosts sharing DIR's
filesystem) and they share one Optuna study and split its trials; with --storage pointing at a
PostgreSQL database, on any number of hosts or TPU slices (DIR then best on gs://). The default
storage is an Optuna journal file, DIR/optuna.journal: no server needed. A worker that dies
(SIGKILL, preemption) leaves its trial without heartbeats; after --grace_s seconds another
worker (or the restarted one) takes it over and resumes it from its last checkpoint. A worker
that gets SIGTERM checkpoints its trial and queues it again for the next worker.

Outputs in DIR: trials/<swept values>-<key>/ (one training workdir per trial, with its
TensorBoard log and hyperparameters: `tensorboard --logdir DIR/trials`), trials.jsonl (every
finished trial's record, readable without Optuna), summary.md, summary.json,
accuracy_vs_flops.png. `--summarize_only` rebuilds them. DIR belongs to one study (DIR/study.json):
another sweep there is refused unless --new_study. Storage faults: calls wait out a database
restart or a full disk (--storage_patience_s), a damaged journal line is named with its byte
offset and repair (--summarize_only then summarises the last trials.jsonl), and a worker taken
for dead while it still trains (paused past --grace_s) is waited for by its trial's retry.

Several processes per worker (the hosts of a TPU slice, each trial using all of them): every
process runs the same command with --coordinator_address, --num_processes and --process_id,
or detected on Cloud TPU / SLURM / Open MPI as for train.py. Process 0 takes each trial from
the study and every process trains it, in-process; only process 0 writes records and summaries.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from absl import flags

from cnnx import process_defaults

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

# The script's own flags (several scripts can then be loaded in one process, as tests do).
# Only absl is imported before parsing, so --help answers at once; jax, TensorFlow and Optuna
# load after.
FLAGS = flags.FlagValues()
_HELP = ("--help", "-h", "-?", "--helpshort", "--helpfull")
_SWEEP = flags.DEFINE_string(
    "sweep", None, "Sweep file, path[:arg] (configs/sweeps/*.py).", required=True, flag_values=FLAGS
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Sweep directory (local or gs://): trials, records, summaries.",
    required=True,
    flag_values=FLAGS,
)
_STORAGE = flags.DEFINE_string(
    "storage",
    None,
    "Optuna storage shared by the workers: a database URL (postgresql://USER:PW@HOST:5432/DB) "
    "or a journal file path. Default: the journal file WORKDIR/optuna.journal.",
    flag_values=FLAGS,
)
_DRY_RUN = flags.DEFINE_bool(
    "dry_run",
    False,
    "List the trials and their status and check each trial's config as a run would before "
    "its first step (model, data, input sizes); train nothing.",
    flag_values=FLAGS,
)
_ALLOW_FAILED = flags.DEFINE_bool(
    "allow_failed_trials",
    False,
    "Choose the best of the measured points even when some trials failed, and exit 0 "
    "(default: no point is chosen from a partial grid, and the exit status is 1).",
    flag_values=FLAGS,
)
_IN_PROCESS = flags.DEFINE_bool(
    "in_process",
    False,
    "Run trials in this process instead of one subprocess per trial.",
    flag_values=FLAGS,
)
_RETRY_FAILED = flags.DEFINE_bool(
    "retry_failed",
    False,
    "Queue again the trials whose last attempt failed, then run.",
    flag_values=FLAGS,
)
_SUMMARIZE_ONLY = flags.DEFINE_bool(
    "summarize_only",
    False,
    "Rebuild trials.jsonl (from the study) and the summary; train nothing.",
    flag_values=FLAGS,
)
_HEARTBEAT_S = flags.DEFINE_integer(
    "heartbeat_s",
    30,
    "Seconds between the heartbeats a worker records for its running trial.",
    flag_values=FLAGS,
)
_GRACE_S = flags.DEFINE_integer(
    "grace_s",
    120,
    "Seconds without a heartbeat after which a running trial counts as dead and is retried "
    "(more than --heartbeat_s; allow for a slow storage).",
    flag_values=FLAGS,
)
_MAX_RETRY = flags.DEFINE_integer(
    "max_retry",
    3,
    "Times a trial whose worker died is retried before it counts as failed.",
    flag_values=FLAGS,
)
_PATIENCE_S = flags.DEFINE_integer(
    "storage_patience_s",
    600,
    "Seconds a storage call retries, with back-off, while the database is down or restarting "
    "or the journal's disk is full, before the worker stops with an error.",
    flag_values=FLAGS,
)
_NEW_STUDY = flags.DEFINE_bool(
    "new_study",
    False,
    "Give a workdir that holds another sweep's study to this one (by default that is refused: "
    "it would overwrite the other's trials.jsonl and summaries).",
    flag_values=FLAGS,
)
MULTI_PROCESS_HELP = (
    "  --coordinator_address, --num_processes, --process_id: several processes per worker "
    "(the hosts of a slice), as for train.py; detected on Cloud TPU, SLURM and Open MPI.\n"
)


def _dry_run(sweep) -> int:
    """Lists the trials, checking each one's config (`cnnx.sweeps.sizes.check_trial`); returns
    2 when a trial would be refused before its first step."""
    from cnnx.errors import CnnxError
    from cnnx.sweeps import results
    from cnnx.sweeps.sizes import check_trial

    done = results.latest_by_key(results.read_all(_WORKDIR.value))
    if sweep.is_search:
        print(f"{_SWEEP.value}: a {sweep.sampler} search of {sweep.n_trials} trials over")
        for k, r in sweep.space.items():
            print(f"  {k}: {r}")
    else:
        print(f"{_SWEEP.value}: {len(sweep.trials)} trials")
    print(f"base model {sweep.base.model.name}, data {sweep.base.data.source}")
    # A search is checked at its ranges' first values (its trials do not exist yet).
    first = {k: r["choices"][0] if "choices" in r else r["low"] for k, r in sweep.space.items()}
    refused = []
    for t in sweep.trials or [sweep.make_trial(first, 0)]:
        status = done.get(t.key, {}).get("status", "pending")
        try:
            snapped, data = check_trial(sweep, t)
            check = "ok" + "".join(f", {k} {a} -> {u} px" for k, (a, u) in snapped.items())
            check += f" (data not checked here: {data})" if data else ""
        except CnnxError as e:
            refused.append(str(e))
            check = f"refused: {str(e).splitlines()[0]}"
        print(f"  {t.index:>4}  {status:<9}  {t.dirname}: {check}")
    if refused:
        print(
            f"error: {len(refused)} trial config(s) refused; the first: {refused[0]}",
            file=sys.stderr,
        )
        return 2
    return 0


def _parse(argv: list[str]) -> None:
    """Parses the flags into FLAGS; --help prints the usage and exits 0, errors exit 2."""
    if any(a in _HELP for a in argv):
        print(f"{__doc__.strip()}\n\nflags:\n{FLAGS.get_help(include_special_flags=False)}")
        print(MULTI_PROCESS_HELP)
        raise SystemExit(0)
    from cnnx.train import distributed

    if "process_id" not in FLAGS:
        distributed.define_flags(FLAGS)
    FLAGS.unparse_flags()  # a second parse in one process starts from the defaults
    try:
        rest = FLAGS([sys.argv[0], *argv])
    except flags.Error as e:
        print(f"error: {e}\nPass --help to see the flags.", file=sys.stderr)
        raise SystemExit(2) from None
    if len(rest) > 1:
        print(f"error: unexpected arguments {rest[1:]}: every input is a --flag", file=sys.stderr)
        raise SystemExit(2)


def _start() -> int | None:
    """Logging and jax.distributed from the multi-process flags (TensorFlow, where a trial's
    data needs it, is imported by the data and kept off the accelerators there)."""
    from cnnx.errors import CnnxError
    from cnnx.train import distributed, logs

    logs.configure()
    try:
        distributed.initialize_from_flags(FLAGS)
    except CnnxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return None


def _export_if_readable(sweep, workdir: str) -> None:
    """--summarize_only: trials.jsonl rewritten from the study; a storage that cannot be read
    (a damaged journal, a database that is down) leaves the last export, said on stderr."""
    from cnnx.errors import StorageError
    from cnnx.sweeps import study
    from cnnx.sweeps.storage import open_storage

    try:
        storage = open_storage(
            _STORAGE.value,
            workdir,
            heartbeat_s=_HEARTBEAT_S.value,
            grace_s=_GRACE_S.value,
            patience_s=min(_PATIENCE_S.value, 30),  # a summary need not wait out an outage
        )
        existing = study.load_existing(sweep, storage)
    except StorageError as e:
        print(f"error: {e}", file=sys.stderr)
        print("Summarising the last export, trials.jsonl, instead.", file=sys.stderr)
        return
    if existing is not None:
        study.export(existing, sweep, workdir)


def main(argv: list[str] | None = None) -> int:
    _parse(list(sys.argv[1:] if argv is None else argv))
    from cnnx.errors import CnnxError
    from cnnx.sweeps import report, results, study
    from cnnx.sweeps.spec import load_sweep
    from cnnx.sweeps.storage import open_storage
    from cnnx.train import distributed

    try:
        sweep = load_sweep(_SWEEP.value)
    except (CnnxError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if _DRY_RUN.value:
        return _dry_run(sweep)
    if not _SUMMARIZE_ONLY.value and (failed := _start()) is not None:
        return failed
    if not _SUMMARIZE_ONLY.value:
        from cnnx.train import compile_cache

        # Trials share the user's persistent compilation cache (the worker subprocesses find
        # the same folder: $CNNX_COMPILATION_CACHE, else the default one).
        compile_cache.setup()
    workdir = _WORKDIR.value
    writer = distributed.is_writer()
    try:
        storage = (
            open_storage(
                _STORAGE.value,
                workdir,
                heartbeat_s=_HEARTBEAT_S.value,
                grace_s=_GRACE_S.value,
                max_retry=_MAX_RETRY.value,
                patience_s=_PATIENCE_S.value,
            )
            if writer and not _SUMMARIZE_ONLY.value
            else None  # processes > 0 of a slice never touch the storage
        )
        if _SUMMARIZE_ONLY.value:
            if writer:
                name = study.study_name(sweep)
                results.claim_workdir(workdir, name, sweep.ref, _NEW_STUDY.value)
                _export_if_readable(sweep, workdir)
        else:
            state = study.run_worker(
                sweep,
                workdir,
                storage,
                isolate=not _IN_PROCESS.value,
                retry_failed=_RETRY_FAILED.value,
                new_study=_NEW_STUDY.value,
            )
            if state == "interrupted":
                return 143
    except CnnxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not writer:
        return 0
    records = results.read_all(workdir)
    print()
    print(report.summarize(sweep, records, workdir, allow_failed=_ALLOW_FAILED.value))
    tally = report.tally(sweep, records)
    if tally["failed"] and not _ALLOW_FAILED.value:
        print(
            f"error: {len(tally['failed'])} of {sweep.total} trials failed (reasons above and in "
            f"{workdir}/summary.md), so no point was chosen; fix the cause and run again with "
            "--retry_failed, or pass --allow_failed_trials to accept the measured points.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
