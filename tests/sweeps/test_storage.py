"""cnnx.sweeps.storage: what the journal storage refuses; heartbeats and retries of a dead
worker's trial run end to end in test_study.py (journal) and test_workers.py (PostgreSQL)."""

import pytest

from cnnx.errors import ConfigError
from cnnx.sweeps.storage import open_storage


def test_journal_refuses_gs_and_bad_grace(tmp_path):
    with pytest.raises(ConfigError, match="postgresql"):
        open_storage(None, "gs://bucket/sweep")
    with pytest.raises(ConfigError, match="grace_s"):
        open_storage(None, str(tmp_path), heartbeat_s=5, grace_s=5)
