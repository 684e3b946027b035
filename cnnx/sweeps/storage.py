"""The study's storage: Optuna's journal file or a database, with heartbeats for dead workers.

Storage (`open_storage`):
  * default: Optuna's journal storage in a file, `<workdir>/optuna.journal` (JournalStorage
    over JournalFileBackend: an append-only log guarded by a lock file, so that processes on
    one machine, or on hosts sharing a POSIX filesystem such as NFS, share one study). No server.
    The journal needs a local (or mounted) path: with a gs:// workdir, give --storage.
  * `postgresql://user:password@host:port/db` (or any SQLAlchemy URL): Optuna's RDBStorage,
    for workers on many hosts or TPU slices.

A worker that dies (SIGKILL, a preempted VM) stops sending heartbeats (`Heartbeat`) for its
trial; after `grace_s` seconds another worker (or the restarted one) marks the trial failed and
`RetryHeartbeatStaleTrialCallback` (named `RetryFailedTrialCallback` before Optuna 4.9)
enqueues it again with the same parameters. Optuna's RDBStorage has heartbeats built in; its
journal storage does not (Optuna 5.0), so `HeartbeatJournalStorage` adds them, storing each
heartbeat as a trial system attribute. Heartbeats compare wall clocks of different hosts: keep
them synchronised (NTP; Cloud VMs are).

Faults of the storage itself (issue 33): every storage call retries, with back-off, the errors
of a database that is down or restarting and of a journal on a full or flaky disk, for
`patience_s` seconds (the study's records wait in the worker meanwhile), then fails with one
`StorageError` line. A journal line that a crash or a full disk cut short is handled where it
can be: a torn last line (its append never took effect) is cut before the next append; a
damaged line followed by others is a `StorageError` naming its byte offset and the repair.
"""

import contextlib
import errno
import functools
import os
import threading
import time
import warnings

from absl import logging
from etils import epath

from cnnx.errors import ConfigError, StorageError
from cnnx.sweeps.journal import journal_file_class
from cnnx.train.workdir import is_remote

JOURNAL = "optuna.journal"
HEARTBEAT_ATTR = "cnnx:heartbeat"
DEFAULT_HEARTBEAT_S = 30
DEFAULT_GRACE_S = 120
DEFAULT_MAX_RETRY = 3
DEFAULT_PATIENCE_S = 600
# OS errors worth waiting out: a full disk or quota, an NFS server that went away or is busy.
_TRANSIENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ESTALE, errno.EAGAIN, errno.EBUSY}
    | {errno.ETIMEDOUT, errno.ECONNREFUSED, errno.ECONNRESET}
)


def load_optuna():
    """optuna, quiet, with its heartbeat warnings off (imported when a sweep runs)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The heartbeat API is marked experimental, and Optuna warns that heartbeats are meant for
    # Study.optimize; this module drives them itself (ask/tell, its own heartbeat thread).
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    return optuna


def _retry_callback(max_retry: int):
    storages = load_optuna().storages
    cls = getattr(storages, "RetryHeartbeatStaleTrialCallback", None)
    cls = cls or storages.RetryFailedTrialCallback  # Optuna < 4.9
    return cls(max_retry=max_retry)


def _is_transient(e: BaseException | None) -> bool:
    """Whether a storage call's error may pass if the call is tried again later (Optuna wraps
    a database's errors in its `StorageInternalError`: their cause decides)."""
    if e is None:
        return False
    if type(e).__name__ == "StorageInternalError":
        return _is_transient(e.__cause__)
    if isinstance(e, OSError):
        return e.errno in _TRANSIENT_ERRNOS
    try:
        import sqlalchemy.exc
    except ImportError:
        return False
    if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
        return True
    transient = (
        sqlalchemy.exc.OperationalError,  # server down, restarting, connection dropped
        sqlalchemy.exc.InterfaceError,
        sqlalchemy.exc.TimeoutError,  # connection pool exhausted
    )
    return isinstance(e, transient)


def _first_line(e: BaseException) -> str:
    if type(e).__name__ == "StorageInternalError" and e.__cause__ is not None:
        e = e.__cause__  # Optuna's wrapper says only that a commit failed
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


_CALL_DEPTH = threading.local()


def with_patience(fn, what: str, where: str, patience_s: float):
    """`fn()`, retried with back-off (1, 2, 4 ... 30 s) while it fails with a transient error.

    Only the outermost storage call of a thread retries (a storage method calling another one
    does not multiply the waits).

    Raises:
      StorageError: still failing after `patience_s` seconds, naming `where` and the error.
    """
    if getattr(_CALL_DEPTH, "n", 0):
        return fn()
    delay, t0 = 1.0, time.monotonic()
    while True:
        _CALL_DEPTH.n = 1
        try:
            return fn()
        except Exception as e:
            if not _is_transient(e):
                raise
            waited = time.monotonic() - t0
            if waited + delay > patience_s:
                raise StorageError(
                    f"the study's storage {where} has failed for {waited:.0f} s ({what}: "
                    f"{_first_line(e)}). Start the database or free the disk, then start the "
                    "worker again: finished trials keep their results in their folders and "
                    "are recorded by the retry (--storage_patience_s sets how long to wait)."
                ) from None
            logging.warning(
                "storage %s: %s failed (%s); retrying in %.0f s", where, what, _first_line(e), delay
            )
        finally:
            _CALL_DEPTH.n = 0
        time.sleep(delay)
        delay = min(2 * delay, 30.0)


def _patient(cls):
    """A subclass of the storage class `cls` whose storage calls go through `with_patience`
    (instance attributes `patience_s` and `where`)."""
    from optuna.storages import BaseStorage

    # The public API, and the private methods Optuna's own callers use (`fail_stale_trials`,
    # the `_CachedStorage` that wraps an RDBStorage).
    private = ["_get_stale_trial_ids", "_create_new_trial", "_set_trial_param", "_get_trials"]
    names = (
        [n for n in vars(BaseStorage) if not n.startswith("_")] + private + ["_get_best_trial_id"]
    )

    def wrap(name):
        method = getattr(cls, name)

        @functools.wraps(method)
        def call(self, *args, **kwargs):
            return with_patience(
                lambda: method(self, *args, **kwargs), name, self.where, self.patience_s
            )

        return call

    body = {n: wrap(n) for n in names if callable(getattr(cls, n, None))}
    body.update(patience_s=DEFAULT_PATIENCE_S, where="")
    return type(f"Patient{cls.__name__}", (cls,), body)


def _journal_storage_class():
    optuna = load_optuna()
    from optuna.storages._heartbeat import BaseHeartbeat

    class HeartbeatJournalStorage(optuna.storages.JournalStorage, BaseHeartbeat):
        """Optuna's JournalStorage with heartbeats (as RDBStorage has them).

        A heartbeat is a trial system attribute (`HEARTBEAT_ATTR`: Unix time, seconds); a
        running trial whose last heartbeat (or start, before the first) is older than
        `grace_period` seconds is stale, and `optuna.storages.fail_stale_trials` fails it and
        calls the retry callback.
        """

        def __init__(self, backend, heartbeat_interval: int, grace_period: int, callback):
            super().__init__(backend)
            self.heartbeat_interval = heartbeat_interval
            self.grace_period = grace_period
            self._stale_callback = callback

        def record_heartbeat(self, trial_id: int) -> None:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now = time.time()
            stale = []
            for t in self.get_all_trials(study_id, states=(optuna.trial.TrialState.RUNNING,)):
                beat = t.system_attrs.get(HEARTBEAT_ATTR)
                if beat is None and t.datetime_start is not None:
                    beat = t.datetime_start.timestamp()  # naive local time, as Optuna stores it
                if beat is not None and now - beat > self.grace_period:
                    stale.append(t._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int | None:
            return self.heartbeat_interval

        def get_heartbeat_stale_trial_callback(self):
            return self._stale_callback

        def get_failed_trial_callback(self):  # the name before Optuna 4.9
            return self._stale_callback

    return HeartbeatJournalStorage


def open_storage(
    storage: str | None,
    workdir: str,
    *,
    heartbeat_s: int = DEFAULT_HEARTBEAT_S,
    grace_s: int = DEFAULT_GRACE_S,
    max_retry: int = DEFAULT_MAX_RETRY,
    patience_s: float = DEFAULT_PATIENCE_S,
):
    """The study's storage, with heartbeats, the retry of stale trials, and storage calls that
    wait out a database restart or a full disk (`with_patience`).

    Args:
      storage: None (journal file in `workdir`), a journal file path, or a database URL
        ('postgresql://user:pw@host:5432/db'; any SQLAlchemy URL Optuna's RDBStorage takes).
      workdir: the sweep workdir.
      heartbeat_s: seconds between a running trial's heartbeats.
      grace_s: seconds without a heartbeat after which a running trial is taken for dead.
      max_retry: times a dead trial is retried.
      patience_s: seconds a storage call (opening the storage too) retries transient errors.

    Raises:
      ConfigError: a journal on gs:// (the journal needs a file lock: give a database URL), or
        grace_s not longer than heartbeat_s.
      StorageError: the database did not answer within `patience_s`, or the journal file is
        damaged (naming the line's byte offset and the repair).
    """
    if grace_s <= heartbeat_s:
        raise ConfigError(f"--grace_s={grace_s} must exceed --heartbeat_s={heartbeat_s}.")
    optuna = load_optuna()
    callback = _retry_callback(max_retry)
    if storage and is_remote(storage) and not storage.startswith("file://"):
        import inspect

        kw = {"heartbeat_interval": heartbeat_s, "grace_period": grace_s}
        params = inspect.signature(optuna.storages.RDBStorage).parameters
        name = (
            "heartbeat_stale_trial_callback"
            if "heartbeat_stale_trial_callback" in params
            else "failed_trial_callback"
        )
        kw[name] = callback
        if storage.startswith(("postgresql://", "postgres://")):
            # SQLAlchemy >= 2.1 maps a bare postgresql:// to psycopg 3; cnnx pins psycopg2.
            storage = "postgresql+psycopg2://" + storage.split("://", 1)[1]
        return _rdb_storage(storage, kw, patience_s)
    path = storage.removeprefix("file://") if storage else str(epath.Path(workdir) / JOURNAL)
    if is_remote(path):
        raise ConfigError(
            f"The journal storage needs a local or mounted file, not {path}: with a gs:// "
            "workdir give --storage=postgresql://... (or a journal file on a shared mount)."
        )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def journal():
        backend = journal_file_class()(path)
        return _patient(_journal_storage_class())(backend, heartbeat_s, grace_s, callback)

    store = with_patience(journal, "opening the journal", path, patience_s)
    store.patience_s, store.where = patience_s, path
    return store


def _rdb_storage(url: str, kw: dict, patience_s: float, attempts: int = 5):
    """RDBStorage(url), retried: workers starting together on an empty database race to create
    Optuna's tables, and the loser's CREATE fails (a unique-constraint violation) while the
    winner's tables are ready a moment later; a database that is down is waited for."""
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    optuna = load_optuna()
    where = make_url(url).render_as_string(hide_password=True)
    cls = _patient(optuna.storages.RDBStorage)
    for attempt in range(attempts):
        try:
            # Connections are checked before use: a database restarted mid-sweep reconnects.
            store = with_patience(
                lambda: cls(url, engine_kwargs={"pool_pre_ping": True}, **kw),
                "connecting",
                where,
                patience_s,
            )
            store.patience_s, store.where = patience_s, where
            return store
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as e:
            if attempt == attempts - 1:
                raise
            logging.info("creating Optuna's tables raced another worker (%s); retrying", e)
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


class Heartbeat:
    """Records the trial's heartbeat every `interval` seconds in a thread while training runs."""

    def __init__(self, storage, trial_id: int, interval: float):
        self._storage, self._id, self._interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cnnx-heartbeat")

    def _run(self):
        while True:
            try:
                self._storage.record_heartbeat(self._id)
            except Exception as e:  # a storage hiccup must not end the trial; retry next beat
                logging.warning("heartbeat of trial id %d failed: %s", self._id, e)
            if self._stop.wait(self._interval):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
