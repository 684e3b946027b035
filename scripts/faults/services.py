"""The services some cases need, started on first use and shared by one matrix run: the Cloud
Storage emulator the tests use (`python -m tests.gcs PORT`) and a throwaway PostgreSQL cluster
(initdb + pg_ctl on a free port, owned by the `postgres` user under root, as
tests/sweeps/conftest.py does).
"""

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

from scripts.faults.core import PYTHON, REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("the service exited at start")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class Emulator:
    """The Cloud Storage emulator of tests/gcs.py, in its own process."""

    def __init__(self, tmp: str):
        from tests.gcs import BUCKET, emulator_env

        self.port = free_port()
        self.log = open(os.path.join(tmp, "gcs_emulator.log"), "w")  # noqa: SIM115 (closed in close)
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "tests.gcs", str(self.port)], cwd=REPO, stdout=self.log, stderr=self.log
        )
        _wait_listening(self.port, self.proc)
        self.bucket, self.env = BUCKET, emulator_env(f"http://127.0.0.1:{self.port}")
        os.environ.update(self.env)  # gcsfs in this process reads the cases' results

    def folder(self) -> str:
        return f"gs://{self.bucket}/{uuid.uuid4().hex[:8]}"

    def fs(self):
        import gcsfs

        return gcsfs.GCSFileSystem(token="anon", endpoint_url=self.env["STORAGE_EMULATOR_HOST"])

    def close(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


class Postgres:
    """A throwaway PostgreSQL cluster (Debian's server binaries), as tests/sweeps/conftest.py."""

    def __init__(self, tmp: str):
        def binary(name):
            found = (
                shutil.which(name)
                or (sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [None])[-1]
            )
            if not found:
                raise RuntimeError(
                    f"PostgreSQL's {name} is not installed (apt-get install postgresql)"
                )
            return found

        self.user = "postgres" if os.geteuid() == 0 else None
        self.root = tempfile.mkdtemp(prefix="cnnx-pg-")
        data, sock = os.path.join(self.root, "data"), os.path.join(self.root, "sock")
        os.makedirs(sock)
        if self.user:
            import pwd

            owner = pwd.getpwnam(self.user)
            for path in (self.root, sock):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self.port = free_port()
        opts = f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = os.path.join(self.root, "log")
        pg_ctl = binary("pg_ctl")
        self._start = [pg_ctl, "-D", data, "-o", opts, "-l", log, "-w", "start"]
        self._stop = [pg_ctl, "-D", data, "-m", "fast", "-w", "stop"]
        self._as_owner([binary("initdb"), "-D", data, "-U", "postgres", "--auth=trust"])
        self.start()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}"

    def _as_owner(self, cmd) -> None:
        cmd = ["runuser", "-u", self.user, "--", *cmd] if self.user else cmd
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._as_owner(self._start)

    def stop(self) -> None:
        self._as_owner(self._stop)

    def database(self) -> str:
        import psycopg2

        name = "sweep_" + uuid.uuid4().hex[:12]
        conn = psycopg2.connect(f"{self.url}/postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        conn.close()
        return f"{self.url}/{name}"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def service(ctx, name, cls):
    if name not in ctx.shared.services:
        ctx.shared.services[name] = cls(ctx.shared.tmp)
    return ctx.shared.services[name]
