"""A throwaway PostgreSQL server for the sweep tests (Debian's `postgresql` package).

`postgres_server` (session): initdb into a temporary folder and `pg_ctl start` on a free port
of 127.0.0.1, trust authentication, stopped at the end. PostgreSQL refuses to run as root, so
under root the cluster belongs to the `postgres` user (the package creates it) and its commands
run through `runuser`. Skips, saying why, when the server binaries are absent (`.ci/run`
installs them). `postgres_url` (per test): a fresh, empty database on that server.
`postgres_control` (per test): `stop()` and `start()` of that server (a database restart).
"""

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from tests.multiprocess import free_port


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _as_owner(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@pytest.fixture(scope="session")
def postgres_server():
    """'postgresql://postgres@127.0.0.1:PORT': a running throwaway PostgreSQL cluster."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        )
    user = None
    if os.geteuid() == 0:
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to own the cluster")
        user = "postgres"
    root = tempfile.mkdtemp(prefix="cnnx-pg-")
    data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
    os.makedirs(sock)
    if user:
        for path in (root, sock):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = _as_owner(
        [pg_ctl, "-D", data, "-o", opts, "-l", os.path.join(root, "log"), "-w", "start"], user
    )
    _CONTROL.update(
        start=lambda: subprocess.run(start, **run),
        stop=lambda: subprocess.run(
            _as_owner([pg_ctl, "-D", data, "-m", "fast", "-w", "stop"], user), **run
        ),
    )
    try:
        subprocess.run(
            _as_owner([initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"], user),
            **run,
        )
        subprocess.run(start, **run)
    except subprocess.CalledProcessError as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {e.stdout}{e.stderr}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_owner([pg_ctl, "-D", data, "-m", "immediate", "stop"], user),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


_CONTROL: dict = {}  # the running cluster's start() and stop()


@pytest.fixture
def postgres_control(postgres_server):
    """{'start': fn, 'stop': fn} of the throwaway server; it is running again after the test."""
    yield _CONTROL
    with contextlib.suppress(subprocess.CalledProcessError):
        _CONTROL["start"]()  # already running: pg_ctl says so and fails


@pytest.fixture
def postgres_url(postgres_server):
    """A database URL of a new, empty database (one per test, so studies never mix)."""
    import psycopg2

    name = "sweep_" + uuid.uuid4().hex[:12]
    conn = psycopg2.connect(f"{postgres_server}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return f"{postgres_server}/{name}"
