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
"""

import contextlib
import os
import threading
import time
import warnings

from absl import logging
from etils import epath

from cnnx.errors import ConfigError
from cnnx.train.workdir import is_remote

JOURNAL = "optuna.journal"
HEARTBEAT_ATTR = "cnnx:heartbeat"
DEFAULT_HEARTBEAT_S = 30
DEFAULT_GRACE_S = 120
DEFAULT_MAX_RETRY = 3


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
):
    """The study's storage, with heartbeats and the retry of stale trials.

    Args:
      storage: None (journal file in `workdir`), a journal file path, or a database URL
        ('postgresql://user:pw@host:5432/db'; any SQLAlchemy URL Optuna's RDBStorage takes).
      workdir: the sweep workdir.
      heartbeat_s: seconds between a running trial's heartbeats.
      grace_s: seconds without a heartbeat after which a running trial is taken for dead.
      max_retry: times a dead trial is retried.

    Raises:
      ConfigError: a journal on gs:// (the journal needs a file lock: give a database URL), or
        grace_s not longer than heartbeat_s.
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
        return _rdb_storage(storage, kw)
    path = storage.removeprefix("file://") if storage else str(epath.Path(workdir) / JOURNAL)
    if is_remote(path):
        raise ConfigError(
            f"The journal storage needs a local or mounted file, not {path}: with a gs:// "
            "workdir give --storage=postgresql://... (or a journal file on a shared mount)."
        )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    backend = optuna.storages.journal.JournalFileBackend(path)
    return _journal_storage_class()(backend, heartbeat_s, grace_s, callback)


def _rdb_storage(url: str, kw: dict, attempts: int = 5):
    """RDBStorage(url), retried: workers starting together on an empty database race to create
    Optuna's tables, and the loser's CREATE fails (a unique-constraint violation) while the
    winner's tables are ready a moment later."""
    import sqlalchemy.exc

    optuna = load_optuna()
    for attempt in range(attempts):
        try:
            # Connections are checked before use: a database restarted mid-sweep reconnects.
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **kw)
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
