"""Sweeps on Optuna: the study, the grid or the sampler, and one worker's trial loop.

The study lives in a storage from `cnnx.sweeps.storage.open_storage` (a journal file or a
database, with heartbeats).

Several `scripts/sweep.py` processes started with the same arguments share one study (its name
is derived from the sweep file's base config and its trials) and split its trials: each asks
the study for the next trial, so no two run the same one.

The grid stays exact: the first worker to create the study enqueues every grid point
(`Study.enqueue_trial`, parameters = the trial's overrides, exact values) and workers only run
enqueued trials. Optuna's own `GridSampler` differs: it takes one list of values per
parameter and samples their full Cartesian product, so it cannot express a constraint-filtered
grid (α·β²·γ² ≈ 2) or an evenly spread subsample of it; it visits the points in a shuffled
order; and workers running in parallel can evaluate the same point twice (its documentation
says so). A sweep file can instead declare ranges and a budget (`Sweep.space`, `n_trials`):
then Optuna's TPE (or random) sampler proposes the trials.

A worker that dies stops sending heartbeats for its trial; after the grace period another
worker fails it and the storage's retry callback enqueues it again with the same parameters
(`cnnx.sweeps.storage`). The trial's folder is named by its parameters, not its Optuna number,
so the retry resumes from the trial's last checkpoint.

A SIGTERM/SIGINT (preemption notice) stops the running trial at a checkpoint, fails it and
enqueues its retry at once, so the next worker resumes it without waiting for the grace period.

One trial over several processes (the hosts of a TPU slice, one jax.distributed job): process 0
takes the trial from the study and publishes it in jax.distributed's key-value store; every
process reads it and trains it in-process, together. Only process 0 touches the storage.
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import socket
import time
from collections.abc import Callable

from absl import logging
from etils import epath

from cnnx.sweeps import results as results_lib
from cnnx.sweeps import runner as runner_lib
from cnnx.sweeps.spec import Sweep, Trial
from cnnx.sweeps.storage import DEFAULT_HEARTBEAT_S, Heartbeat, load_optuna
from cnnx.train.workdir import is_remote

ENQUEUED_ATTR = "cnnx:enqueued"
RECORD_ATTR = "record"
_KV_PREFIX = "cnnx_sweep/trial/"
# Followers of a multi-process slice wait this long for process 0's next trial (milliseconds;
# the key-value store takes an int32): a week, i.e. for as long as a trial or a retry takes.
_KV_TIMEOUT_MS = 7 * 24 * 3600 * 1000


def study_name(sweep: Sweep) -> str:
    """'<sweep file>-<hash>': the same sweep (base config, grid or search) gives the same study.

    A changed base config, grid or search space makes a new study (trials trained under the
    old settings are not mixed in); the trial folders of unchanged trials are reused.
    """
    blob = {
        "base": sweep.base.to_dict(),
        "trials": sorted(t.key for t in sweep.trials),
        "space": sweep.space,
        "metric": sweep.metric,
        "mode": sweep.mode,
        "sampler": sweep.sampler if sweep.is_search else None,
        "n_trials": sweep.n_trials,
        "seed": sweep.seed,
    }
    digest = hashlib.sha1(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()
    stem = os.path.basename(sweep.ref.split(":")[0]).removesuffix(".py")
    arg = sweep.ref.partition(":")[2]
    return f"{stem}{':' + arg if arg else ''}-{digest[:10]}"


def _sampler(sweep: Sweep):
    optuna = load_optuna()
    if sweep.is_search and sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=sweep.seed)
    # Grid trials are all enqueued (fixed parameters), so the sampler only matters for a search.
    return optuna.samplers.TPESampler(seed=sweep.seed)


def grid_choices(sweep: Sweep) -> dict[str, list]:
    """Per override key, the values the grid uses (an enqueued trial's categorical choices)."""
    choices: dict[str, list] = {}
    for t in sweep.trials:
        for k, v in t.overrides.items():
            if v not in choices.setdefault(k, []):
                choices[k].append(v)
    return choices


def open_study(sweep: Sweep, storage, wait_s: float = 60.0):
    """Creates or loads the sweep's study; the creator enqueues the grid.

    Two workers starting together: exactly one creates the study (Optuna raises
    DuplicatedStudyError for the other, which loads it) and enqueues the grid; the others wait
    until the creator has marked the grid enqueued (`ENQUEUED_ATTR`). A creator that died
    before finishing is covered: after `wait_s` seconds a worker enqueues the missing points.

    Returns:
      The `optuna.Study`.
    """
    optuna = load_optuna()
    name = study_name(sweep)
    direction = "maximize" if sweep.mode == "max" else "minimize"
    try:
        study = optuna.create_study(
            study_name=name, storage=storage, direction=direction, sampler=_sampler(sweep)
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=_sampler(sweep))
        created = False
    if created:
        study.set_user_attr("sweep", sweep.ref)
    if sweep.is_search:
        return study
    t0 = time.time()
    while not created and ENQUEUED_ATTR not in study.user_attrs:
        if time.time() - t0 > wait_s:
            logging.warning(
                "study %s: grid not marked enqueued after %.0f s; completing it", name, wait_s
            )
            created = True
            break
        time.sleep(0.5)
    if created:
        # Enqueued trials carry their key (their parameters are only 'fixed' until they run).
        have = {
            t.user_attrs.get("key") or _key_of(sweep, t.params)
            for t in study.get_trials(deepcopy=False)
        }
        for t in sweep.trials:
            if t.key not in have:
                study.enqueue_trial(dict(t.overrides), user_attrs={"key": t.key})
        study.set_user_attr(ENQUEUED_ATTR, len(sweep.trials))
    return study


def load_existing(sweep: Sweep, storage):
    """The sweep's study if the storage has it, else None (nothing is created)."""
    optuna = load_optuna()
    try:
        return optuna.load_study(study_name=study_name(sweep), storage=storage)
    except KeyError:
        return None


def _key_of(sweep: Sweep, params: dict) -> str | None:
    from cnnx.sweeps.spec import trial_key

    return trial_key(params, sweep.base) if params else None


def suggest(sweep: Sweep, otrial, choices: dict[str, list]) -> dict | None:
    """The trial's overrides: its enqueued grid point, or the sampler's proposal (a search).

    Returns None for a grid study whose trial was not an enqueued one (another worker took the
    last enqueued trial between our look and our `ask`).
    """
    if not sweep.is_search:
        # An enqueued point has 'fixed_params'; a retried one (after its worker died) has its
        # parameters already set.
        fixed = _frozen(otrial).system_attrs.get("fixed_params") or otrial.params
        if not fixed:
            return None
        return {k: otrial.suggest_categorical(k, choices[k]) for k in choices if k in fixed}
    out = {}
    for k, r in sweep.space.items():
        if "choices" in r:
            out[k] = otrial.suggest_categorical(k, list(r["choices"]))
        elif (
            all(isinstance(r[x], int) for x in ("low", "high"))
            and "log" not in r
            and (isinstance(r.get("step", 1), int))
        ):
            out[k] = otrial.suggest_int(k, r["low"], r["high"], step=r.get("step", 1))
        else:
            out[k] = otrial.suggest_float(
                k, r["low"], r["high"], log=bool(r.get("log")), step=r.get("step")
            )
    return out


def _frozen(otrial):
    """The `FrozenTrial` of an asked trial (its system attributes: fixed or retried params)."""
    return otrial.study._storage.get_trial(otrial._trial_id)


@dataclasses.dataclass
class _Slice:
    """The processes of one jax.distributed job training each trial together."""

    processes: int = 1
    index: int = 0
    round: int = 0

    def publish(self, message: dict) -> None:
        if self.processes > 1:
            from jax._src.distributed import global_state

            global_state.client.key_value_set(_KV_PREFIX + str(self.round), json.dumps(message))
        self.round += 1

    def receive(self) -> dict:
        from jax._src.distributed import global_state

        text = global_state.client.blocking_key_value_get(
            _KV_PREFIX + str(self.round), _KV_TIMEOUT_MS
        )
        self.round += 1
        return json.loads(text)


def _slice() -> _Slice:
    import jax

    return _Slice(processes=jax.process_count(), index=jax.process_index())


def records(study, sweep: Sweep) -> list[dict]:
    """The record of every finished trial (completed or failed, not the ones retried)."""
    optuna = load_optuna()
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    out = [
        t.user_attrs[RECORD_ATTR]
        for t in study.get_trials(deepcopy=False, states=done)
        if RECORD_ATTR in t.user_attrs
    ]
    return sorted(out, key=lambda r: r.get("index", 0))


def export(study, sweep: Sweep, workdir: str) -> list[dict]:
    """Rewrites `<workdir>/trials.jsonl` from the study; returns the records."""
    recs = records(study, sweep)
    results_lib.write_records(results_lib.export_path(workdir), recs)
    return recs


def _fmt_s(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def progress_line(study, sweep: Sweep, trial: Trial, status: str, seconds: float) -> str:
    """'[3/6] alpha=1.2 beta=1.1 gamma=1.15: completed in 42 s; 3 left, ETA 1 min (01:55 UTC)'.

    The ETA is the mean duration of the study's completed trials times the trials left,
    divided by the workers now running trials (this one included).
    """
    optuna = load_optuna()
    ts = study.get_trials(deepcopy=False)
    recs = [t.user_attrs[RECORD_ATTR] for t in ts if RECORD_ATTR in t.user_attrs]
    finished = len({r["key"] for r in recs})
    left = max(0, sweep.total - finished)
    running = sum(t.state == optuna.trial.TrialState.RUNNING for t in ts)
    durations = [r["driver_wall_time_s"] for r in recs if r.get("status") == "completed"]
    line = f"[{finished}/{sweep.total}] {trial.label}: {status} in {_fmt_s(seconds)}; {left} left"
    if left and durations:
        eta = math.ceil(left / max(1, running + 1)) * (sum(durations) / len(durations))
        end = time.strftime("%H:%M UTC", time.gmtime(time.time() + eta))
        line += f", ETA {_fmt_s(eta)} ({end})"
    return line


def _budget_left(study, sweep: Sweep) -> int:
    """A search's trials still to start: the budget less the trials done, running or queued."""
    optuna = load_optuna()
    state = optuna.trial.TrialState
    used = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in (state.COMPLETE, state.RUNNING, state.WAITING):
            used += 1
        elif t.state == state.FAIL and RECORD_ATTR in t.user_attrs:
            used += 1  # a trial that failed on its own (a dead worker's is retried instead)
    return sweep.n_trials - used


def _next_trial(study, sweep: Sweep, choices):
    """(optuna trial, overrides) to run next, or None when there is none to start now."""
    optuna = load_optuna()
    state = optuna.trial.TrialState
    waiting = study.get_trials(deepcopy=False, states=(state.WAITING,))
    if not waiting and (not sweep.is_search or _budget_left(study, sweep) <= 0):
        return None
    otrial = study.ask()
    overrides = suggest(sweep, otrial, choices)
    if overrides is None:  # lost the race for the last enqueued trial: not a grid point
        otrial.set_user_attr("unused", True)
        study.tell(otrial, state=state.FAIL)
        return None
    return otrial, overrides


def _others_running(study) -> bool:
    optuna = load_optuna()
    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))


def enqueue_failed(study, sweep: Sweep) -> int:
    """Enqueues again every trial whose last attempt failed on its own; returns how many."""
    state = load_optuna().trial.TrialState
    latest = results_lib.latest_by_key(records(study, sweep))
    queued = {
        _key_of(sweep, t.params) or t.user_attrs.get("key")
        for t in study.get_trials(deepcopy=False, states=(state.WAITING, state.RUNNING))
    }
    n = 0
    for key, r in latest.items():
        if r.get("status") == "failed" and key not in queued:
            study.enqueue_trial(dict(r["overrides"]), user_attrs={"key": key})
            n += 1
    return n


def run_worker(
    sweep: Sweep,
    workdir: str,
    storage,
    *,
    isolate: bool = True,
    retry_failed: bool = False,
    new_study: bool = False,
    runner: Callable | None = None,
    poll_s: float | None = None,
    log: Callable[[str], None] = print,
) -> str:
    """One sweep worker: runs the study's trials until none is left to run, then exports.

    Every process of a jax.distributed job calls this; process 0 talks to the study and the
    others train the trials it publishes (see the module docstring).

    Args:
      sweep: the loaded sweep.
      workdir: sweep directory (trials/<name>/ workdirs, trials.jsonl, summaries).
      storage: from `cnnx.sweeps.storage.open_storage`.
      isolate: one subprocess per trial (default) or in-process (forced for several processes).
      retry_failed: first enqueue again the trials whose last attempt failed.
      new_study: give a workdir that holds another study to this one
        (`results_lib.claim_workdir`; otherwise that is a `WorkdirError`).
      runner: `fn(sweep, trial, trial_workdir, interrupt) -> dict` replacing the default (tests).
      poll_s: seconds between looks at the study while other workers' trials run (default:
        the heartbeat interval).
      log: where progress lines go.

    Returns:
      'completed' when the study has no trial left to run or running, 'interrupted' after a
      SIGTERM/SIGINT.
    """
    sl = _slice()
    many = sl.processes > 1
    runner = runner or (
        runner_lib.run_subprocess if isolate and not many else runner_lib.run_inprocess
    )
    if sl.index > 0:
        return _follow(sweep, workdir, sl, runner)
    optuna = load_optuna()
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    results_lib.claim_workdir(workdir, study_name(sweep), sweep.ref, replace=new_study)
    study = open_study(sweep, storage)
    if retry_failed:
        log(f"enqueued {enqueue_failed(study, sweep)} failed trial(s) again")
    choices = grid_choices(sweep)
    interval = storage.get_heartbeat_interval() or DEFAULT_HEARTBEAT_S
    poll_s = poll_s or interval
    whoami = f"{socket.gethostname()}:{os.getpid()}"
    status = "completed"
    with runner_lib._Interrupt() as interrupt:
        while not interrupt.requested:
            optuna.storages.fail_stale_trials(study)
            nxt = _next_trial(study, sweep, choices)
            if nxt is None:
                if not _others_running(study):
                    break
                # Other workers' trials run: wait, to take over any whose worker dies.
                time.sleep(poll_s)
                continue
            otrial, overrides = nxt
            retry_of = _frozen(otrial).system_attrs.get("failed_trial")
            first = otrial.number if retry_of is None else retry_of
            trial = sweep.make_trial(overrides, first)
            twd = runner_lib.trial_workdir(workdir, trial)
            retried = retry_of is not None
            log(
                f"trial {trial.label} (Optuna #{otrial.number}"
                + (f", retry of #{first}" if retried else "")
                + f") -> {twd}"
            )
            otrial.set_user_attr("key", trial.key)
            otrial.set_user_attr("worker", whoami)
            t0 = time.time()
            sl.publish({"overrides": overrides, "index": trial.index, "workdir": twd})
            with Heartbeat(storage, otrial._trial_id, interval):
                runner_lib.wait_for_folder(twd, interrupt, log)
                out = runner(sweep, trial, twd, interrupt) if not interrupt.requested else {}
            seconds = time.time() - t0
            if out.get("status") == "preempted" or interrupt.requested:
                _requeue(study, storage, otrial)
                log(f"interrupted during trial {trial.label}; it is queued again and resumes.")
                status = "interrupted"
                break
            record = {
                "key": trial.key,
                "index": trial.index,
                "overrides": trial.overrides,
                "tags": trial.tags,
                "workdir": os.path.relpath(twd, workdir) if not is_remote(twd) else twd,
                "optuna_trial": otrial.number,
                "worker": whoami,
                "driver_wall_time_s": seconds,
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **out,
            }
            if _store(study, otrial, record, sweep.metric):
                log(progress_line(study, sweep, trial, record["status"], seconds))
            else:
                log(
                    f"trial {trial.label} was taken for dead meanwhile (no heartbeat for "
                    "--grace_s: a paused worker, or a storage out of reach) and is retried; the "
                    f"retry resumes from {twd} and records its result."
                )
            export(study, sweep, workdir)
    sl.publish({"done": True})
    export(study, sweep, workdir)
    return status


def _store(study, otrial, record: dict, metric: str) -> bool:
    """Stores a finished trial's record and outcome; False when the trial was failed as stale
    meanwhile (its retry, in the same folder, records the result instead)."""
    optuna = load_optuna()
    value = record.get("metrics", {}).get(metric)
    try:
        otrial.set_user_attr(RECORD_ATTR, record)
        if record["status"] == "completed" and value is not None and math.isfinite(value):
            study.tell(otrial, float(value))
        else:
            study.tell(otrial, state=optuna.trial.TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        logging.warning("trial #%d was failed as stale meanwhile", otrial.number)
        return False
    return True


def _requeue(study, storage, otrial) -> None:
    """Fails an interrupted trial and enqueues its retry now (what the heartbeat would do)."""
    optuna = load_optuna()
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        study.tell(otrial, state=optuna.trial.TrialState.FAIL)
        callback = storage.get_heartbeat_stale_trial_callback()
        if callback is not None:
            frozen = next(t for t in study.get_trials(deepcopy=True) if t.number == otrial.number)
            callback(study, frozen)


def _follow(sweep: Sweep, workdir: str, sl: _Slice, runner) -> str:
    """Processes > 0 of a slice: train each trial process 0 publishes, until it says done."""
    with runner_lib._Interrupt() as interrupt:
        while True:
            message = sl.receive()
            if message.get("done"):
                return "completed"
            trial = sweep.make_trial(message["overrides"], message["index"])
            out = runner(sweep, trial, message["workdir"], interrupt)
            print(f"process {sl.index}: trial {trial.label} from process 0: {out.get('status')}")
            if interrupt.requested:
                return "interrupted"
