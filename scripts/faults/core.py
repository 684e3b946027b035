"""The fault matrix's machinery: a case, the context it runs in, and the classifier.

A case (`Case`) sets up a tiny run in its own temporary folder, injects one fault and returns
what it saw (`Seen`): the processes it ran (`Run`: exit status, output, timed out) and what
its own checks found lost or wrong. `classify` turns that into one of four outcomes:

- lost: something already written (checkpoint, results, records, trials) is gone or damaged;
- unclear: a hang (timeout), a traceback, a native crash, or a failure without an `error:` line;
- wrong: a silent wrong result (a fault accepted that must be refused, a resume that differs);
- survived: one `error:` line that says what is wrong, or a correct continuation.
"""

import contextlib
import dataclasses
import fnmatch
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable
OUTCOMES = ("survived", "lost", "unclear", "wrong")
TRACEBACK = "Traceback (most recent call last)"
# The tiny run most cases start from: LeNet-5 on digits, 12 steps, a checkpoint every 4.
TINY = [
    "--config=configs/default.py:smoke",
    "--config.train.num_steps=12",
    "--config.train.log_every_steps=1",
    "--config.ckpt.every_steps=4",
    "--config.eval.every_steps=100000",
]


@dataclasses.dataclass
class Run:
    """One process a case ran."""

    args: list[str]
    rc: int | None  # None: timed out (killed by the matrix)
    out: str  # stdout and stderr together
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.rc is None

    def error_lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.startswith("error:")]


@dataclasses.dataclass
class Seen:
    """What a case observed: its runs and what its own checks found (None: nothing)."""

    runs: list[Run]
    expect: str = "error"  # "error": one error: line; "ok": exit 0; "any": either
    match: str | None = None  # a regex the error line (expect error) must contain
    lost: str | None = None
    wrong: str | None = None
    note: str = ""  # evidence of a correct continuation
    signals: tuple[int, ...] = ()  # exit statuses the case caused itself (143, -9)


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of the matrix."""

    name: str
    category: str
    setup: str  # the run it starts from
    fault: str  # what it injects
    run: Callable[["Context"], Seen]
    timeout_s: float = 150.0  # the whole case, every run in it (a shared 2-core host)


def _default_signals() -> None:
    """A child starts with default handlers, even under `nohup ... &` (which ignores SIGINT:
    Python would then install no KeyboardInterrupt handler and a SIGINT case would be moot)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _drain(proc: subprocess.Popen) -> None:
    for chunk in iter(lambda: proc.stdout.read1(65536), b""):
        proc.chunks.append(chunk)


def _last_line(out: str) -> str:
    lines = [line for line in out.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


def classify(seen: Seen) -> tuple[str, str]:
    """(outcome, one line of evidence) of what a case saw; the order is most serious first."""
    if seen.lost:
        return "lost", seen.lost
    for run in seen.runs:
        if run.timed_out:
            return "unclear", f"hang: no exit after {run.seconds:.0f} s ({_last_line(run.out)})"
        if TRACEBACK in run.out:
            tail = run.out[run.out.rindex(TRACEBACK) :].strip().splitlines()
            return "unclear", f"traceback ({len(tail)} lines): {tail[-1][:160]}"
        if run.rc is not None and run.rc < 0 and run.rc not in seen.signals:
            name = signal.Signals(-run.rc).name if -run.rc in signal.valid_signals() else run.rc
            return "unclear", f"killed by {name} ({_last_line(run.out)})"
    if seen.wrong:
        return "wrong", seen.wrong
    final = seen.runs[-1]
    errors = final.error_lines()
    if seen.expect == "error" or (seen.expect == "any" and final.rc != 0):
        if final.rc == 0:
            return "wrong", f"accepted silently (exit 0): {_last_line(final.out)}"
        if not errors:
            return "unclear", f"exit {final.rc} without an error: line ({_last_line(final.out)})"
        if seen.match and not re.search(seen.match, errors[0]):
            return "unclear", f"error line does not say /{seen.match}/: {errors[0][:160]}"
        return "survived", errors[0][:200]
    if final.rc != 0 and final.rc not in seen.signals:
        why = errors[0][:160] if errors else _last_line(final.out)
        return "unclear", f"exit {final.rc} where a continuation was expected: {why}"
    return "survived", seen.note or _last_line(final.out)


class Context:
    """One case's temporary folder, the processes it starts, and the matrix's shared services."""

    def __init__(self, tmp: str, shared: "Shared", timeout_s: float):
        self.tmp, self.shared, self.timeout_s = tmp, shared, timeout_s
        self.deadline = time.time() + timeout_s

    def path(self, *parts: str) -> str:
        return os.path.join(self.tmp, *parts)

    def env(self, extra: dict[str, str] | None = None, devices: int = 1) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "CNNX_ONEDNN")}
        env.update(
            PYTHONPATH=REPO,
            JAX_PLATFORMS="cpu",
            XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
            CNNX_ONEDNN="off",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.shared.cache_env)
        env.update(extra or {})
        return env

    def left(self) -> float:
        return max(1.0, self.deadline - time.time())

    def start(self, args, env=None, devices=1, cwd=REPO) -> subprocess.Popen:
        # A pipe drained by a thread, not a file: a case's file-size limit must not stop the
        # process from printing its error.
        proc = subprocess.Popen(
            [PYTHON, *args],
            cwd=cwd,
            env=self.env(env, devices),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_signals,
        )
        proc.chunks, proc.t0, proc.args_ = [], time.time(), list(args)
        proc.reader = threading.Thread(target=_drain, args=(proc,), daemon=True)
        proc.reader.start()
        return proc

    def finish(self, proc: subprocess.Popen, timeout: float | None = None) -> Run:
        try:
            proc.wait(timeout=min(timeout or self.left(), self.left()))
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
        proc.reader.join(timeout=10)
        out = b"".join(proc.chunks).decode(errors="replace")
        log = self.path(f"run-{time.monotonic_ns()}.log")  # kept with --keep, for a closer look
        with contextlib.suppress(OSError), open(log, "w") as f:
            f.write(" ".join(proc.args_) + "\n" + out)
        return Run(proc.args_, rc, out, time.time() - proc.t0)

    def run(self, args, env=None, devices=1, timeout=None, cwd=REPO) -> Run:
        return self.finish(self.start(args, env, devices, cwd), timeout)

    def train(self, workdir, *flags, fault=None, env=None, devices=1, base=TINY, **kw) -> Run:
        """train.py (or the fault worker with `fault` hooks) on TINY plus `flags`."""
        entry = ["scripts/faults/worker.py"] if fault else ["train.py"]
        extra = {**(env or {}), **({"CNNX_FAULT": json.dumps(fault)} if fault else {})}
        return self.run([*entry, *base, f"--workdir={workdir}", *flags], extra, devices, **kw)


class Shared:
    """What the cases share within one matrix run: the compilation cache, the uninterrupted
    reference runs, and the services (storage emulator, PostgreSQL) started on first use."""

    def __init__(self, tmp: str):
        self.tmp = tmp
        self.cache_env = {
            "JAX_COMPILATION_CACHE_DIR": os.path.join(tmp, "xla_cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "1",
        }
        self.references: dict[tuple, dict] = {}
        self.services: dict[str, object] = {}

    def reference(self, ctx: Context, flags: tuple[str, ...] = (), devices: int = 1) -> dict:
        """The uninterrupted run's losses by step and final results (computed once)."""
        key = (flags, devices)
        if key not in self.references:
            wd = os.path.join(self.tmp, f"reference-{len(self.references)}")
            run = ctx.train(wd, *flags, devices=devices)
            if run.rc != 0:
                raise RuntimeError(f"the reference run failed: {run.out[-2000:]}")
            self.references[key] = outcome_of(wd)
        return self.references[key]

    def close(self) -> None:
        for service in self.services.values():
            service.close()


def read_jsonl(path: str) -> list[dict]:
    """The parseable lines of a JSON-lines file ([] when it is missing)."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, errors="replace") as f:
        for line in f:
            with contextlib.suppress(ValueError):
                rows.append(json.loads(line))
    return rows


def outcome_of(workdir: str) -> dict:
    """A run's losses by step and final evaluation (what a bit-identical resume must match)."""
    losses = {m["step"]: m.get("train/loss") for m in read_jsonl(f"{workdir}/train_metrics.jsonl")}
    results = {}
    if os.path.exists(f"{workdir}/results.json"):
        with open(f"{workdir}/results.json") as f:
            results = json.load(f)
    return {
        "losses": losses,
        "eval": {k: v for k, v in results.items() if k.startswith("eval/")},
        "status": results.get("status"),
        "results": results,
    }


def differs(workdir: str, reference: dict) -> str | None:
    """Why a resumed run is not the uninterrupted one bit for bit (None: identical)."""
    got = outcome_of(workdir)
    if got["status"] != "completed":
        return f"status {got['status']!r} after the resume, not 'completed'"
    if got["losses"] != reference["losses"]:
        bad = [s for s in reference["losses"] if got["losses"].get(s) != reference["losses"][s]]
        return f"train losses differ from the uninterrupted run at steps {bad[:5]}"
    if got["eval"] != reference["eval"] or not got["eval"]:
        return f"final evaluation differs: {got['eval']} vs {reference['eval']}"
    return None


def snapshot(root: str) -> dict[str, tuple[int, int]]:
    """Every file under root: (size, mtime_ns)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.stat(os.path.join(dirpath, name))
                out[os.path.relpath(os.path.join(dirpath, name), root)] = (
                    st.st_size,
                    st.st_mtime_ns,
                )
    return out


def changed(before: dict, after: dict, keep: Callable[[str], bool] = lambda _: True) -> str | None:
    """Which of `before`'s files (those `keep` selects) are missing or changed in `after`."""
    gone = [p for p in before if keep(p) and p not in after]
    edited = [p for p in before if keep(p) and p in after and after[p] != before[p]]
    if gone:
        return f"{len(gone)} file(s) removed, e.g. {gone[0]}"
    if edited:
        return f"{len(edited)} file(s) changed, e.g. {edited[0]}"
    return None


def checkpoint_steps(workdir: str) -> list[int]:
    folder = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(folder):
        return []
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


def select(cases, names=(), categories=()):
    """The cases whose name matches one of `names` (globs) and whose category is listed."""
    chosen = [
        c
        for c in cases
        if (not names or any(fnmatch.fnmatchcase(c.name, n) for n in names))
        and (not categories or c.category in categories)
    ]
    return chosen


def run_case(case, shared, root, timeout_s=None) -> dict:
    """Runs one case in a folder of its own under `root`; its row of the matrix."""
    tmp = tempfile.mkdtemp(prefix=f"{case.name}-", dir=root)
    ctx = Context(tmp, shared, timeout_s or case.timeout_s)
    t0 = time.time()
    try:
        outcome, evidence = classify(case.run(ctx))
    except Exception as e:  # the matrix's own failure to set a case up: reported, not hidden
        outcome = "unclear"
        last = traceback.format_exception_only(e)[-1].strip()
        evidence = f"the case itself failed: {last[:180]}"
    return {
        "case": case.name,
        "category": case.category,
        "setup": case.setup,
        "fault": case.fault,
        "outcome": outcome,
        "evidence": evidence,
        "seconds": round(time.time() - t0, 1),
    }


def figures(rows) -> dict:
    return {"tried": len(rows), **{o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES}}
