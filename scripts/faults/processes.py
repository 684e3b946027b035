"""Cases of several processes: sweep workers (a journal file or a real PostgreSQL; failed,
killed, paused and typo'd sweeps) and one run of two jax.distributed processes.
"""

import glob
import json
import os
import re
import signal
import time
from pathlib import Path

from scripts.faults.core import Case, Seen, checkpoint_steps, differs, outcome_of, read_jsonl
from scripts.faults.services import Postgres, free_port, service

# --- sweeps ------------------------------------------------------------------------------

SWEEP = "tests/sweeps/sweep_fixture.py:n=2,steps=8"
FAST = ["--in_process", "--heartbeat_s=1", "--grace_s=4"]


def _sweep(ctx, wd, *flags, sweep=SWEEP, env=None, timeout=None):
    return ctx.run(
        ["scripts/sweep.py", f"--sweep={sweep}", f"--workdir={wd}", *FAST, *flags],
        env=env,
        timeout=timeout,
    )


def _trials(wd) -> list[dict]:
    return read_jsonl(os.path.join(wd, "trials.jsonl"))


def _completed(wd) -> int:
    latest = {}
    for t in _trials(wd):
        latest[t.get("key") or t.get("trial_key") or str(t.get("params"))] = t.get(
            "status", t.get("state")
        )
    return sum(str(s).lower() in ("completed", "complete") for s in latest.values())


def sweep_completes(ctx):
    wd = ctx.path("sweep")
    run = _sweep(ctx, wd)
    n = _completed(wd)
    return Seen(
        [run],
        expect="ok",
        wrong=None if n == 2 else f"{n} of 2 trials completed",
        note=f"{n}/2 trials completed",
    )


def sweep_error(sweep, *flags, match=None, refuse_choice=True):
    def case(ctx):
        wd = ctx.path("sweep")
        run = _sweep(ctx, wd, *flags, sweep=sweep)
        wrong = (
            "a chosen point presented from failed trials"
            if refuse_choice and "Chosen point" in run.out
            else None
        )
        return Seen([run], match=match, wrong=wrong)

    return case


def sweep_allow_failed(ctx):
    wd = ctx.path("sweep")
    run = _sweep(
        ctx, wd, "--allow_failed_trials", sweep="tests/sweeps/sweep_fixture.py:n=2,steps=8,size=35"
    )
    return Seen([run], expect="any", note="failed trials accepted on request")


def sweep_after(fault, *flags, expect="error", match=None, says=None):
    """A completed sweep, then `fault(ctx, wd)`, then the sweep command (with `flags`) again;
    `says`: a continuation that must also print an error: line matching it."""

    def case(ctx):
        wd = ctx.path("sweep")
        first = _sweep(ctx, wd)
        before = _trials(wd)
        fault(ctx, wd)
        again = _sweep(ctx, wd, *flags)
        after = _trials(wd)
        lost = (
            f"trials.jsonl went from {len(before)} to {len(after)} records"
            if len(after) < len(before)
            else None
        )
        seen = Seen([first, again], expect=expect, match=match, lost=lost)
        if says and again.rc == 0:
            named = [e for e in again.error_lines() if re.search(says, e)]
            seen.note = f"{named[0][:160]}; went on" if named else ""
            seen.wrong = None if named else f"exit 0 without an error: line saying /{says}/"
        return seen

    return case


def _torn_journal(ctx, wd):
    path = os.path.join(wd, "optuna.journal")
    data = Path(path).read_bytes()
    lines = data.splitlines(keepends=True)
    k = len(lines) // 2
    with open(path, "wb") as f:
        f.write(b"".join(lines[:k]) + lines[k][: len(lines[k]) // 2] + b"".join(lines[k + 1 :]))


def _torn_last_line(ctx, wd):
    path = os.path.join(wd, "optuna.journal")
    data = Path(path).read_bytes()
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
        while (
            not glob.glob(f"{wd}/trials/*/checkpoints/[0-9]*")
            and first.poll() is None
            and time.time() < deadline
        ):
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
            runs,
            expect="ok",
            signals=(143, -9, -15),
            wrong=None if n == 2 else f"{n} of 2 trials completed",
            note=f"exits {[r.rc for r in runs]}; {n}/2 trials completed",
        )

    return case


def sweep_postgres(restart: bool):
    def case(ctx):
        pg = service(ctx, "postgres", Postgres)
        wd = ctx.path("sweep")
        if not restart:  # a port where nothing listens: the server is down
            url = f"postgresql://postgres@127.0.0.1:{free_port()}/db"
            return Seen(
                [_sweep(ctx, wd, f"--storage={url}", "--storage_patience_s=3")],
                match=r"postgres|storage|database|127",
            )
        url = pg.database()
        proc = ctx.start(
            [
                "scripts/sweep.py",
                "--sweep=tests/sweeps/sweep_fixture.py:n=2,steps=60",
                f"--workdir={wd}",
                f"--storage={url}",
                *FAST,
            ]
        )
        deadline = time.time() + 60
        while (
            not glob.glob(f"{wd}/trials/*/checkpoints/[0-9]*")
            and proc.poll() is None
            and time.time() < deadline
        ):
            time.sleep(0.2)
        pg.stop()
        time.sleep(3)
        pg.start()
        run = ctx.finish(proc)
        n = _completed(wd)
        return Seen(
            [run],
            expect="ok",
            wrong=None if n == 2 else f"{n} of 2 trials completed",
            note=f"database restarted mid-trial; {n}/2 completed",
        )

    return case


# --- two processes -------------------------------------------------------------------------

MP = [
    "--config=tests/train/tiny.py",
    "--config.mesh.data=1",
    "--config.mesh.fsdp=4",
    "--config.mesh.fsdp_min_size=64",
    "--config.ckpt.every_steps=100",
]


def _two(ctx, wd, fault=None):
    from tests.multiprocess import distributed_flags

    port = free_port()
    entry = "scripts/faults/worker.py" if fault else "train.py"
    env = {"CNNX_FAULT": json.dumps(fault)} if fault else {}
    procs = [
        ctx.start(
            [entry, *MP, f"--workdir={wd}", *distributed_flags(port, 2, i)], env=env, devices=2
        )
        for i in range(2)
    ]
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
            [*stopped, *resumed],
            expect="ok",
            signals=(143,),
            wrong=differs(wd, ctx.shared.references[key]) if resumed[-1].rc == 0 else None,
            note=f"exits {[r.rc for r in stopped]}, checkpoints {steps}; "
            "the resume equals the uninterrupted run",
        )

    return case


S = "sweep fixture: 2 LeNet-5 widths, 8 steps, in-process"
M = "tests/train/tiny.py, 2 processes x 2 devices (FSDP), saves only at stop and end"
CASES = [
    Case("sweep_completes", "sweeps", S, "none (the baseline)", sweep_completes),
    Case(
        "sweep_arg_typo",
        "sweeps",
        "configs/sweeps/fixres.py:digitz",
        "a typo in the sweep file's arg",
        sweep_error("configs/sweeps/fixres.py:digitz", "--dry_run", match=r"digitz"),
    ),
    Case(
        "sweep_key_typo",
        "sweeps",
        S,
        "stepz=3 in the sweep arg",
        sweep_error("tests/sweeps/sweep_fixture.py:stepz=3", match=r"stepz"),
    ),
    Case(
        "sweep_failed_trials",
        "sweeps",
        S + ", 35 px",
        "every trial refused (LeNet-5 takes no 35 px)",
        sweep_error("tests/sweeps/sweep_fixture.py:n=2,steps=8,size=35"),
    ),
    Case(
        "sweep_allow_failed",
        "sweeps",
        S + ", 35 px",
        "the same with --allow_failed_trials",
        sweep_allow_failed,
    ),
    Case(
        "sweep_dry_run_refused",
        "sweeps",
        S + ", 35 px",
        "--dry_run of trials that would be refused",
        sweep_error("tests/sweeps/sweep_fixture.py:n=2,steps=8,size=35", "--dry_run", match=r"35"),
    ),
    Case(
        "sweep_damaged_journal",
        "sweeps",
        S,
        "half a journal line glued to the next",
        sweep_after(_torn_journal, match=r"offset"),
    ),
    Case(
        "sweep_damaged_journal_summary",
        "sweeps",
        S,
        "the same, then --summarize_only",
        sweep_after(_torn_journal, "--summarize_only", expect="ok", says=r"offset"),
    ),
    Case(
        "sweep_torn_last_line",
        "sweeps",
        S,
        "the journal's last line cut (crash mid-append)",
        sweep_after(_torn_last_line, expect="any"),
    ),
    Case(
        "sweep_second_study",
        "sweeps",
        S,
        "another sweep file into the same workdir",
        sweep_after(
            lambda c, w: None,
            "--sweep=tests/sweeps/sweep_fixture.py:n=3,steps=8",
            match=r"study|another",
        ),
    ),
    Case(
        "sweep_sigkill_worker",
        "sweeps",
        S + ", 200 steps",
        "SIGKILL mid-trial, then a new worker past --grace_s",
        sweep_killed_worker("KILL"),
        timeout_s=150,
    ),
    Case(
        "sweep_sigterm_worker",
        "sweeps",
        S + ", 200 steps",
        "SIGTERM mid-trial, then the command again",
        sweep_killed_worker("TERM"),
        timeout_s=150,
    ),
    Case(
        "sweep_paused_past_grace",
        "sweeps",
        S + ", 200 steps",
        "worker paused 7 s (grace 4 s), a second worker starts",
        sweep_killed_worker("STOP", pause_s=7.0),
        timeout_s=150,
    ),
    Case(
        "sweep_postgres_down",
        "sweeps",
        S + ", PostgreSQL storage",
        "no server at the URL (patience 3 s)",
        sweep_postgres(restart=False),
    ),
    Case(
        "sweep_postgres_restart",
        "sweeps",
        S + ", PostgreSQL storage",
        "the server restarted mid-trial",
        sweep_postgres(restart=True),
        timeout_s=150,
    ),
    Case(
        "two_proc_sigterm_3_6",
        "multiprocess",
        M,
        "SIGTERM to process 0 after step 3, process 1 after 6",
        two_processes({"signal_at": [3, 6]}),
        timeout_s=240,
    ),
    Case(
        "two_proc_sigterm_one",
        "multiprocess",
        M,
        "SIGTERM to process 0 only, after step 4",
        two_processes({"signal_at": [4, 10**6]}),
        timeout_s=240,
    ),
    Case(
        "two_proc_sigkill_one",
        "multiprocess",
        M,
        "SIGKILL to process 1 after step 5 (0.3 s per step)",
        two_processes({"signal_at": [10**6, 5], "signal": "KILL", "sleep_s": 0.3}, expect="error"),
        timeout_s=150,
    ),
]
