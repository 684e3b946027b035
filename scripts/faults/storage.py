"""Cases of storage and coordination: gs:// (the Cloud Storage emulator the tests use), sweeps
(a journal file, a real PostgreSQL), two processes, the compilation cache, eval.py.

The emulator (`python -m tests.gcs PORT`) and PostgreSQL (initdb + pg_ctl on a free port, owned
by the `postgres` user under root, as tests/sweeps/conftest.py does) start on first use and are
shared by the cases of one matrix run.
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

from scripts.faults.core import (
    PYTHON,
    REPO,
    TINY,
    Case,
    Seen,
    changed,
    checkpoint_steps,
    differs,
    outcome_of,
    read_jsonl,
    snapshot,
)
from scripts.faults.training import STOPPED, _damage, _mount_tmpfs, _remount, _unmount


def _free_port() -> int:
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

        self.port = _free_port()
        self.log = open(os.path.join(tmp, "gcs_emulator.log"), "w")
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
            found = shutil.which(name) or (sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [None])[-1]
            if not found:
                raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
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
        self.port = _free_port()
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


def _service(ctx, name, cls):
    if name not in ctx.shared.services:
        ctx.shared.services[name] = cls(ctx.shared.tmp)
    return ctx.shared.services[name]


def _gs_outcome(gcs, url: str, local: str) -> dict:
    fs = gcs.fs()
    os.makedirs(local, exist_ok=True)
    for name in ("train_metrics.jsonl", "results.json"):
        with contextlib.suppress(FileNotFoundError):
            fs.get(f"{url}/{name}", os.path.join(local, name))
    return local


def gcs_resume(fault=None, *, outage_s=0.0, damage=False):
    """train.py on gs://: a fault, then the same command; the end equals the local run's."""

    def case(ctx):
        gcs = _service(ctx, "gcs", Emulator)
        ref = ctx.shared.reference(ctx)
        wd = gcs.folder()
        marker = ctx.path("marker")
        os.makedirs(marker)
        runs = []
        if outage_s:
            proc = ctx.start(
                ["scripts/faults/worker.py", *TINY, f"--workdir={wd}"],
                env={**gcs.env, "CNNX_FAULT": f'{{"pause_at": 5, "marker": "{marker}"}}'},
            )
            while not os.path.exists(f"{marker}/at") and proc.poll() is None:
                time.sleep(0.1)
            gcs.proc.send_signal(signal.SIGSTOP)  # the storage stops answering
            open(f"{marker}/go", "w").close()
            time.sleep(outage_s)
            gcs.proc.send_signal(signal.SIGCONT)
            runs.append(ctx.finish(proc))
        else:
            runs.append(ctx.train(wd, fault=fault, env=gcs.env))
        if damage:
            fs = gcs.fs()
            steps = sorted(int(p.rsplit("/", 1)[1]) for p in fs.ls(f"{wd}/checkpoints") if p.rsplit("/", 1)[1].isdigit())
            files = [f for f in fs.find(f"{wd}/checkpoints/{steps[-1]}")]
            biggest = max(files, key=lambda f: fs.size(f))
            data = bytearray(fs.cat(biggest))
            data[len(data) // 2 : len(data) // 2 + 32] = b"\xde\xad\xbe\xef" * 8
            fs.pipe(biggest, bytes(data))
        if runs[-1].rc != 0 or fault or damage:
            runs.append(ctx.train(wd, env=gcs.env))
        local = _gs_outcome(gcs, wd, ctx.path("fetched"))
        return Seen(
            runs, expect="ok", wrong=differs(local, ref), signals=STOPPED,
            note=f"exits {[r.rc for r in runs]}; the end equals the local uninterrupted run",
        )

    return case


def gcs_error(bucket=None, unreachable=False, match=None):
    def case(ctx):
        gcs = _service(ctx, "gcs", Emulator)
        env = dict(gcs.env)
        if unreachable:
            url = f"http://127.0.0.1:{_free_port()}"
            env.update(STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url)
        wd = f"gs://{bucket}/wd" if bucket else gcs.folder()
        return Seen([ctx.train(wd, env=env)], match=match)

    return case


def gcs_eval(ctx):
    gcs = _service(ctx, "gcs", Emulator)
    wd = gcs.folder()
    ctx.train(wd, env=gcs.env)
    run = ctx.run(["eval.py", f"--workdir={wd}"], env=gcs.env)
    ok = "top" in run.out.lower()
    return Seen([run], expect="ok", wrong=None if ok else "no metrics printed", note="eval.py on gs:// printed its metrics")


# --- sweeps ------------------------------------------------------------------------------

SWEEP = "tests/sweeps/sweep_fixture.py:n=2,steps=8"
FAST = ["--in_process", "--heartbeat_s=1", "--grace_s=4"]


def _sweep(ctx, wd, *flags, sweep=SWEEP, env=None, timeout=None):
    return ctx.run(["scripts/sweep.py", f"--sweep={sweep}", f"--workdir={wd}", *FAST, *flags], env=env, timeout=timeout)


def _trials(wd) -> list[dict]:
    return read_jsonl(os.path.join(wd, "trials.jsonl"))


def _completed(wd) -> int:
    latest = {}
    for t in _trials(wd):
        latest[t.get("key") or t.get("trial_key") or str(t.get("params"))] = t.get("status", t.get("state"))
    return sum(str(s).lower() in ("completed", "complete") for s in latest.values())


def sweep_completes(ctx):
    wd = ctx.path("sweep")
    run = _sweep(ctx, wd)
    n = _completed(wd)
    return Seen([run], expect="ok", wrong=None if n == 2 else f"{n} of 2 trials completed", note=f"{n}/2 trials completed")


def sweep_error(sweep, *flags, match=None, refuse_choice=True):
    def case(ctx):
        wd = ctx.path("sweep")
        run = _sweep(ctx, wd, *flags, sweep=sweep)
        wrong = "a chosen point presented from failed trials" if refuse_choice and "Chosen point" in run.out else None
        return Seen([run], match=match, wrong=wrong)

    return case


def sweep_allow_failed(ctx):
    wd = ctx.path("sweep")
    run = _sweep(ctx, wd, "--allow_failed_trials", sweep="tests/sweeps/sweep_fixture.py:n=2,steps=8,size=35")
    return Seen([run], expect="any", note="failed trials accepted on request")


def sweep_after(fault, *flags, expect="error", match=None):
    """A completed sweep, then `fault(ctx, wd)`, then the sweep command (with `flags`) again."""

    def case(ctx):
        wd = ctx.path("sweep")
        first = _sweep(ctx, wd)
        before = _trials(wd)
        fault(ctx, wd)
        again = _sweep(ctx, wd, *flags)
        after = _trials(wd)
        lost = f"trials.jsonl went from {len(before)} to {len(after)} records" if len(after) < len(before) else None
        return Seen([first, again], expect=expect, match=match, lost=lost)

    return case


def _torn_journal(ctx, wd):
    path = os.path.join(wd, "optuna.journal")
    data = open(path, "rb").read()
    lines = data.splitlines(keepends=True)
    k = len(lines) // 2
    with open(path, "wb") as f:
        f.write(b"".join(lines[:k]) + lines[k][: len(lines[k]) // 2] + b"".join(lines[k + 1 :]))


def _torn_last_line(ctx, wd):
    path = os.path.join(wd, "optuna.journal")
    data = open(path, "rb").read()
    os.truncate(path, len(data) - len(data.splitlines()[-1]) // 2 - 1)


def sweep_killed_worker(sig: str, *, pause_s: float = 0.0):
    """A worker signalled (or paused past --grace_s) mid-trial; a second worker and the first
    finish the study: every trial completes once, none is lost."""

    def case(ctx):
        wd = ctx.path("sweep")
        sweep = "tests/sweeps/sweep_fixture.py:n=2,steps=200"
        args = ["scripts/sweep.py", f"--sweep={sweep}", f"--workdir={wd}", *FAST]
        first = ctx.start(args)
        deadline = time.time() + 60
        while not glob.glob(f"{wd}/trials/*/checkpoints/[0-9]*") and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        if pause_s:
            os.killpg(first.pid, signal.SIGSTOP)
            time.sleep(pause_s)
            second = ctx.start(args)
            time.sleep(2)
            os.killpg(first.pid, signal.SIGCONT)
            runs = [ctx.finish(first), ctx.finish(second)]
        else:
            os.killpg(first.pid, getattr(signal, f"SIG{sig}"))
            runs = [ctx.finish(first)]
            time.sleep(5 if sig == "KILL" else 0)  # past --grace_s: the trial counts as dead
            runs.append(ctx.run(args))
        n = _completed(wd)
        return Seen(
            runs, expect="ok", signals=(143, -9, -15), wrong=None if n == 2 else f"{n} of 2 trials completed",
            note=f"exits {[r.rc for r in runs]}; {n}/2 trials completed",
        )

    return case


def sweep_postgres(restart: bool):
    def case(ctx):
        pg = _service(ctx, "postgres", Postgres)
        wd = ctx.path("sweep")
        if not restart:  # a port where nothing listens: the server is down
            url = f"postgresql://postgres@127.0.0.1:{_free_port()}/db"
            return Seen([_sweep(ctx, wd, f"--storage={url}", "--storage_patience_s=3")], match=r"postgres|storage|database|127")
        url = pg.database()
        proc = ctx.start(["scripts/sweep.py", "--sweep=tests/sweeps/sweep_fixture.py:n=2,steps=60", f"--workdir={wd}", f"--storage={url}", *FAST])
        deadline = time.time() + 60
        while not glob.glob(f"{wd}/trials/*/checkpoints/[0-9]*") and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        pg.stop()
        time.sleep(3)
        pg.start()
        run = ctx.finish(proc)
        n = _completed(wd)
        return Seen([run], expect="ok", wrong=None if n == 2 else f"{n} of 2 trials completed", note=f"database restarted mid-trial; {n}/2 completed")

    return case


# --- two processes -------------------------------------------------------------------------

MP = ["--config=tests/train/tiny.py", "--config.mesh.data=1", "--config.mesh.fsdp=4", "--config.mesh.fsdp_min_size=64", "--config.ckpt.every_steps=100"]


def _two(ctx, wd, fault=None):
    from tests.multiprocess import distributed_flags

    port = _free_port()
    entry = "scripts/faults/worker.py" if fault else "train.py"
    env = {"CNNX_FAULT": __import__("json").dumps(fault)} if fault else {}
    procs = [ctx.start([entry, *MP, f"--workdir={wd}", *distributed_flags(port, 2, i)], env=env, devices=2) for i in range(2)]
    return [ctx.finish(p) for p in procs]


def two_processes(fault, *, expect="ok"):
    def case(ctx):
        key = "two-process reference"
        if key not in ctx.shared.references:
            ref_wd = ctx.path("straight")
            runs = _two(ctx, ref_wd)
            if any(r.rc != 0 for r in runs):
                return Seen(runs, expect="ok", note="the uninterrupted two-process run failed")
            ctx.shared.references[key] = outcome_of(ref_wd)
        wd = ctx.path("wd")
        stopped = _two(ctx, wd, fault)
        if expect == "error":
            return Seen(stopped, expect="error", signals=(-9,))
        resumed = _two(ctx, wd)
        steps = checkpoint_steps(wd)
        return Seen(
            [*stopped, *resumed], expect="ok", signals=(143,), wrong=differs(wd, ctx.shared.references[key]),
            note=f"exits {[r.rc for r in stopped]}, checkpoints {steps}; the resume equals the uninterrupted run",
        )

    return case


# --- compilation cache, eval.py ------------------------------------------------------------


def cache_fault(how: str):
    def case(ctx):
        ref = ctx.shared.reference(ctx)
        cache = ctx.path("cache")
        runs = [ctx.train(ctx.path("first"), f"--compilation_cache={cache}")] if how != "file" else []
        if how in ("junk", "truncate"):
            for path in glob.glob(f"{cache}/**/*", recursive=True):
                if os.path.isfile(path):
                    size = os.path.getsize(path)
                    if how == "junk":
                        open(path, "wb").write(os.urandom(size))
                    else:
                        os.truncate(path, size // 2)
        elif how == "file":
            open(cache, "w").write("not a folder")
        mnt = None
        if how == "readonly":
            mnt = ctx.path("mnt")
            _mount_tmpfs(mnt, "1m", ro=True)
            cache = mnt
        try:
            runs.append(ctx.train(ctx.path("wd"), f"--compilation_cache={cache}"))
        finally:
            if mnt:
                _unmount(mnt)
        final = runs[-1]
        return Seen(runs, expect="any", wrong=differs(ctx.path("wd"), ref) if final.rc == 0 else None, note="completed, equal to the run without the fault")

    return case


def eval_running(ctx):
    wd = ctx.path("wd")
    train = ctx.start(
        ["scripts/faults/worker.py", *TINY, "--config.train.num_steps=60", "--config.ckpt.every_steps=2", "--config.ckpt.max_to_keep=1", f"--workdir={wd}"],
        env={"CNNX_FAULT": '{"sleep_s": 0.15}'},
    )
    while not checkpoint_steps(wd) and train.poll() is None:
        time.sleep(0.2)
    evals = [ctx.run(["eval.py", f"--workdir={wd}"]) for _ in range(2)]
    done = ctx.finish(train)
    bad = [r for r in evals if r.rc != 0]
    return Seen([*evals, done], expect="ok", note=f"2 evals of a running workdir: exits {[r.rc for r in evals]}", wrong=None if not bad else None)


def eval_error(*flags, prepare="run", match=None):
    def case(ctx):
        wd = ctx.path("wd")
        if prepare == "run":
            ctx.train(wd)
        elif prepare == "empty":
            os.makedirs(wd)
        elif prepare == "damaged":
            ctx.train(wd, fault={"signal_at": [9], "signal": "KILL", "sleep_s": 0.2})
            _damage("flip")(ctx, wd)
        before = snapshot(wd)
        run = ctx.run(["eval.py", f"--workdir={wd}", *flags])
        return Seen([run], expect="error" if prepare != "damaged" else "any", match=match, lost=changed(before, snapshot(wd), keep=lambda p: "checkpoints" in p))

    return case


def eval_readonly(ctx):
    mnt = ctx.path("mnt")
    _mount_tmpfs(mnt, "64m")
    try:
        wd = os.path.join(mnt, "wd")
        ctx.train(wd)
        _remount(mnt, "ro")
        return Seen([ctx.run(["eval.py", f"--workdir={wd}"])], expect="any", match=r"output|writ|read-only")
    finally:
        _unmount(mnt)


def eval_output_new_folder(ctx):
    wd, out = ctx.path("wd"), ctx.path("new", "deeper", "r.json")
    ctx.train(wd)
    run = ctx.run(["eval.py", f"--workdir={wd}", f"--output={out}"])
    return Seen([run], expect="ok", wrong=None if os.path.exists(out) else f"{out} not written", note="--output folder made")


G, S = "default smoke on gs:// (the emulator)", "sweep fixture: 2 LeNet-5 widths, 8 steps, in-process"
M = "tests/train/tiny.py, 2 processes x 2 devices (FSDP), saves only at stop and end"
CASES = [
    Case("gcs_sigkill_step6", "gcs", G, "SIGKILL after step 6", gcs_resume({"signal_at": [6], "signal": "KILL", "sleep_s": 0.2})),
    Case("gcs_sigterm_step5", "gcs", G, "SIGTERM after step 5", gcs_resume({"signal_at": [5]})),
    Case("gcs_sigkill_in_save8", "gcs", G, "SIGKILL while save 8 commits", gcs_resume({"signal_in_save": "KILL", "save_step": 8})),
    Case("gcs_outage_8s", "gcs", G, "the emulator stopped (SIGSTOP) 8 s after step 5", gcs_resume(outage_s=8.0), timeout_s=120),
    Case("gcs_damaged_object", "gcs", G + ", SIGKILL at 9", "bytes overwritten in the newest step's largest object", gcs_resume({"signal_at": [9], "signal": "KILL", "sleep_s": 0.2}, damage=True)),
    Case("gcs_unreachable", "gcs", G, "the endpoint refuses connections", gcs_error(unreachable=True, match=r"endpoint|reach|credential|127\.0\.0\.1")),
    Case("gcs_missing_bucket", "gcs", G, "gs://no-such-bucket-cnnx/wd", gcs_error(bucket="no-such-bucket-cnnx", match=r"bucket")),
    Case("gcs_eval", "gcs", G, "eval.py on the finished gs:// workdir", gcs_eval),
    Case("sweep_completes", "sweeps", S, "none (the baseline)", sweep_completes),
    Case("sweep_arg_typo", "sweeps", "configs/sweeps/fixres.py:digitz", "a typo in the sweep file's arg", sweep_error("configs/sweeps/fixres.py:digitz", "--dry_run", match=r"digitz")),
    Case("sweep_key_typo", "sweeps", S, "stepz=3 in the sweep arg", sweep_error("tests/sweeps/sweep_fixture.py:stepz=3", match=r"stepz")),
    Case("sweep_failed_trials", "sweeps", S + ", 35 px", "every trial refused (LeNet-5 takes no 35 px)", sweep_error("tests/sweeps/sweep_fixture.py:n=2,steps=8,size=35")),
    Case("sweep_allow_failed", "sweeps", S + ", 35 px", "the same with --allow_failed_trials", sweep_allow_failed),
    Case("sweep_dry_run_refused", "sweeps", S + ", 35 px", "--dry_run of trials that would be refused", sweep_error("tests/sweeps/sweep_fixture.py:n=2,steps=8,size=35", "--dry_run", match=r"35")),
    Case("sweep_damaged_journal", "sweeps", S, "half a journal line glued to the next", sweep_after(_torn_journal, match=r"offset")),
    Case("sweep_damaged_journal_summary", "sweeps", S, "the same, then --summarize_only", sweep_after(_torn_journal, "--summarize_only", match=r"offset")),
    Case("sweep_torn_last_line", "sweeps", S, "the journal's last line cut (crash mid-append)", sweep_after(_torn_last_line, expect="any")),
    Case("sweep_second_study", "sweeps", S, "another sweep file into the same workdir", sweep_after(lambda c, w: None, "--sweep=tests/sweeps/sweep_fixture.py:n=3,steps=8", match=r"study|another")),
    Case("sweep_sigkill_worker", "sweeps", S + ", 200 steps", "SIGKILL mid-trial, then a new worker past --grace_s", sweep_killed_worker("KILL"), timeout_s=150),
    Case("sweep_sigterm_worker", "sweeps", S + ", 200 steps", "SIGTERM mid-trial, then the command again", sweep_killed_worker("TERM"), timeout_s=150),
    Case("sweep_paused_past_grace", "sweeps", S + ", 200 steps", "worker paused 7 s (grace 4 s), a second worker starts", sweep_killed_worker("STOP", pause_s=7.0), timeout_s=150),
    Case("sweep_postgres_down", "sweeps", S + ", PostgreSQL storage", "no server at the URL (patience 3 s)", sweep_postgres(restart=False)),
    Case("sweep_postgres_restart", "sweeps", S + ", PostgreSQL storage", "the server restarted mid-trial", sweep_postgres(restart=True), timeout_s=150),
    Case("two_proc_sigterm_3_6", "multiprocess", M, "SIGTERM to process 0 after step 3, process 1 after 6", two_processes({"signal_at": [3, 6]}), timeout_s=240),
    Case("two_proc_sigterm_one", "multiprocess", M, "SIGTERM to process 0 only, after step 4", two_processes({"signal_at": [4, 10**6]}), timeout_s=240),
    Case("two_proc_sigkill_one", "multiprocess", M, "SIGKILL to process 1 after step 5 (0.3 s per step)", two_processes({"signal_at": [10**6, 5], "signal": "KILL", "sleep_s": 0.3}, expect="error"), timeout_s=150),
    Case("cache_junk_entries", "cache", "default smoke, a fresh cache", "every cache entry overwritten with random bytes", cache_fault("junk")),
    Case("cache_truncated_entries", "cache", "default smoke, a fresh cache", "every cache entry cut in half", cache_fault("truncate")),
    Case("cache_dir_is_a_file", "cache", "default smoke", "--compilation_cache names a file", cache_fault("file")),
    Case("cache_dir_readonly", "cache", "default smoke", "--compilation_cache on a read-only mount", cache_fault("readonly")),
    Case("eval_running_workdir", "eval", "default smoke, 60 steps, a save every 2, max_to_keep 1", "eval.py twice while it trains", eval_running, timeout_s=120),
    Case("eval_empty_workdir", "eval", "an empty folder", "eval.py on it", eval_error(prepare="empty", match=r"checkpoint|config")),
    Case("eval_missing_step", "eval", "a finished default smoke", "eval.py --step=999", eval_error("--step=999", match=r"999")),
    Case("eval_damaged_newest", "eval", "default smoke, SIGKILL at 9", "bytes overwritten in the newest step, eval.py", eval_error(prepare="damaged", match=r"step")),
    Case("eval_readonly_workdir", "eval", "a finished default smoke on a read-only mount", "eval.py", eval_readonly),
    Case("eval_output_new_folder", "eval", "a finished default smoke", "eval.py --output into folders that do not exist", eval_output_new_folder),
]
