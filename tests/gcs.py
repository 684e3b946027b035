"""A local Cloud Storage emulator for gs:// tests (PyPI `gcp-storage-emulator`).

    from tests.gcs import gcs  # noqa: F401     (then take `gcs` as a test argument)

The session fixture `gcs` starts the emulator in its own process on 127.0.0.1 on a free port,
with one bucket (`gcs.bucket`), and points every client at it the way they agree on:
`STORAGE_EMULATOR_HOST` (gcsfs, google-cloud-storage) and `TENSORSTORE_GCS_HTTP_URL`
(tensorstore, under orbax; with `GOOGLE_AUTH_TOKEN_FOR_TESTING`, a token it sends instead of
looking for credentials), in this process and, through `gcs.env`, in the subprocesses a test
starts. Tests skip, saying why, when the emulator or gcsfs is not installed.

The emulator's media downloads lack the `x-goog-generation` header that Cloud Storage sends
with every object read (and that tensorstore requires: "Malformed StorageGeneration"
otherwise); `python -m tests.gcs PORT` runs the emulator with that header added, and nothing
else changed.
"""

import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import pytest

BUCKET = "bucket"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Emulator:
    url: str  # http://127.0.0.1:PORT
    bucket: str
    env: dict  # the variables that point clients at it

    def folder(self, name: str = "") -> str:
        """A fresh gs:// folder in the bucket (one per test)."""
        return f"gs://{self.bucket}/{uuid.uuid4().hex[:8]}{'/' + name if name else ''}"


def emulator_env(url: str) -> dict[str, str]:
    return {
        "STORAGE_EMULATOR_HOST": url,
        "TENSORSTORE_GCS_HTTP_URL": url,
        # gcsfs asks the Storage Control API for each bucket's layout, which an emulator does
        # not serve: a warning and a retry per call. Real buckets answer it.
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        # tensorstore sends this fixed token instead of looking for credentials (and logging an
        # E-level "Could not find the credentials file" when there are none); the emulator
        # ignores it. Never for a real bucket: it is not a credential.
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
        "EPATH_USE_TF": "false",  # as cnnx sets it (cnnx/__init__.py)
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_listening(port: int, proc: subprocess.Popen, log, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the storage emulator exited: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the storage emulator did not listen on port {port} in {timeout} s")


@pytest.fixture(scope="session")
def gcs(tmp_path_factory):
    """The running emulator (`Emulator`); this process's environment points at it."""
    # Looked up, not imported: gcsfs reads GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT when imported.
    for package, why in (("gcp_storage_emulator", "gcp-storage-emulator"), ("gcsfs", "gcsfs")):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{why} is not installed (pip install -r requirements-dev.txt)")
    port = _free_port()
    log = tmp_path_factory.mktemp("gcs_emulator") / "log.txt"
    with open(log, "w") as out:  # a file, not a pipe nobody reads (it would fill and block)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.gcs", str(port)], cwd=REPO, stdout=out, stderr=out
        )
    try:
        _wait_until_listening(port, proc, log)
        url = f"http://127.0.0.1:{port}"
        env = emulator_env(url)
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            yield Emulator(url=url, bucket=BUCKET, env=env)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _serve(port: int) -> None:
    """The emulator, in memory, with `x-goog-generation` on object reads."""
    from gcp_storage_emulator.handlers import objects

    download = objects.download

    def download_with_generation(request, response, storage, *args, **kwargs):
        download(request, response, storage, *args, **kwargs)
        try:
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        except Exception:  # not found: the response already says so
            return
        response["x-goog-generation"] = obj["generation"]
        response["x-goog-metageneration"] = obj["metageneration"]

    objects.download = download_with_generation  # before the server module builds its routes
    from gcp_storage_emulator.server import create_server

    create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET).run()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
