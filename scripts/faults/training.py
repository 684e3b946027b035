"""Cases of one training run: signals at steps and during saves, NaN losses, full disks.

Each starts from core.TINY (LeNet-5 on digits, 12 steps, a checkpoint every 4) in the case's
own folder; a resume is compared with the uninterrupted run (losses of every step, the final
evaluation) bit for bit.
"""

import os
import subprocess
import time

from scripts.faults.core import (
    TINY,
    Case,
    Seen,
    checkpoint_steps,
    differs,
    outcome_of,
    read_jsonl,
)

STOPPED = (143, -15, -9, -2, 130)  # exit statuses of a run the case itself signalled


def _retrained(workdir: str, saved: list[int]) -> str | None:
    """Lost: the resume trained a step again that a checkpoint already held."""
    if not saved:
        return None
    logged = [m["step"] for m in read_jsonl(f"{workdir}/train_metrics.jsonl")]
    if logged.count(saved[-1]) > 1:
        return f"the resume trained step {saved[-1]} again: its checkpoint was lost"
    return None


def resume(fault: dict | None = None, *, flags=(), chain=(), before=None) -> callable:
    """A run with `fault` (then each fault of `chain`, then `before(ctx, workdir)`), then the
    same command to the end: the workdir must resume and end as the uninterrupted run (after
    `before` damaged something, one error: line saying so and what to do is clear too)."""

    def case(ctx):
        ref = ctx.shared.reference(ctx, tuple(flags))
        wd = ctx.path("wd")
        runs = [ctx.train(wd, *flags, fault=f) for f in (fault, *chain) if f]
        saved = checkpoint_steps(wd)
        if before:
            before(ctx, wd)
        runs.append(ctx.train(wd, *flags))
        lost = _retrained(wd, saved)
        ignored = [
            f"SIG{f.get('signal', 'TERM')} after step {f['signal_at'][0]} was ignored: "
            "the run went on to the end"
            for f, r in zip((fault, *chain), runs)
            if f
            and f.get("signal", "TERM") != "KILL"
            and "signal_at" in f
            and r.rc == 0
            and f["signal_at"][0] < 12
        ]
        return Seen(
            runs,
            expect="any" if before else "ok",
            lost=lost,
            wrong=None if lost or runs[-1].rc != 0 else (ignored[:1] or [differs(wd, ref)])[0],
            signals=STOPPED,
            note=f"stopped with {[r.rc for r in runs[:-1]]}, checkpoints {saved}; "
            "the resume equals the uninterrupted run",
        )

    return case


def sigterm_at_startup(ctx):
    ref = ctx.shared.reference(ctx)
    wd = ctx.path("wd")
    proc = ctx.start(["train.py", *TINY, f"--workdir={wd}"])
    time.sleep(2.0)  # importing jax, building the input: before the first step
    proc.terminate()
    first = ctx.finish(proc)
    second = ctx.train(wd)
    wrong = differs(wd, ref) if second.rc == 0 else None
    return Seen([first, second], expect="ok", wrong=wrong, signals=STOPPED)


def _damage(how: str):
    def before(ctx, wd):
        step = checkpoint_steps(wd)[-1]
        files = []
        for dirpath, _, names in os.walk(os.path.join(wd, "checkpoints", str(step))):
            files += [os.path.join(dirpath, n) for n in names]
        biggest = max(files, key=os.path.getsize)
        if how == "flip":
            with open(biggest, "r+b") as f:
                f.seek(os.path.getsize(biggest) // 2)
                f.write(b"\xde\xad\xbe\xef" * 8)
        elif how == "truncate":
            os.truncate(biggest, os.path.getsize(biggest) // 3)
        else:  # empty the step's folder
            for path in files:
                os.remove(path)

    return before


def _torn_metrics(ctx, wd):
    with open(os.path.join(wd, "train_metrics.jsonl"), "a") as f:
        f.write('{"step": 99, "train/lo')


def _garbage_config(ctx, wd):
    with open(os.path.join(wd, "config.json"), "w") as f:
        f.write("{not json")


def expect_error(*flags, match=None, devices=1, base=None, fault=None):
    """A run that must stop at once with one error: line (and write no checkpoint)."""

    def case(ctx):
        kw = {} if base is None else {"base": base}
        run = ctx.train(ctx.path("wd"), *flags, devices=devices, fault=fault, **kw)
        saved = checkpoint_steps(ctx.path("wd"))
        wrong = f"checkpoints {saved} written by a refused run" if saved and run.rc else None
        return Seen([run], expect="error", match=match, wrong=wrong)

    return case


def nan_stops(ctx):
    wd = ctx.path("wd")
    run = ctx.train(wd, fault={"nan_at": [6]})
    saved = checkpoint_steps(wd)
    lost = None if 4 in saved else f"checkpoint 4 is gone after the NaN (left: {saved})"
    wrong = f"a checkpoint after the NaN step was kept: {saved}" if max(saved or [0]) > 4 else None
    return Seen([run], match=r"step 6", lost=lost, wrong=wrong)


def nan_skips(ctx):
    wd = ctx.path("wd")
    run = ctx.train(wd, "--config.train.on_nonfinite=skip", fault={"nan_at": [6, 7]})
    skipped = outcome_of(wd)["results"].get("skipped_steps")
    wrong = None if skipped == 2 else f"skipped_steps={skipped}, 2 NaN steps were injected"
    return Seen([run], expect="ok", wrong=wrong, note="2 steps skipped, counted, run completed")


def full_disk(step: int, limit: int, then_resume: bool = True):
    """From `step` on no file may grow past `limit` bytes; then (disk freed) the same command."""

    def case(ctx):
        ref = ctx.shared.reference(ctx)
        wd = ctx.path("wd")
        first = ctx.train(wd, fault={"fsize_at": [step, limit]})
        saved = checkpoint_steps(wd)
        seen = Seen([first], match=r"disk|space|write|errno|[Ss]av", signals=())
        if first.rc == 0:
            seen.wrong = "the run completed although its writes failed"
            return seen
        if then_resume:
            second = ctx.train(wd)
            errors = first.error_lines()
            seen.lost = _retrained(wd, saved)
            seen.wrong = differs(wd, ref) if errors and second.rc == 0 else None
            seen.runs = [first, second]
            seen.expect, seen.note = "ok", (errors[0][:150] if errors else "") + "; resumed"
            if not errors:  # the first run's message is what this case is about
                seen.expect = "error"
                seen.runs = [first]
        return seen

    return case


def _mount_tmpfs(path: str, size: str, ro: bool = False) -> None:
    os.makedirs(path, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path], check=True)


def _remount(path: str, opts: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{opts}", path], check=True)


def _unmount(path: str) -> None:
    subprocess.run(["umount", "-l", path], check=False)


def tmpfs_full_then_resume(ctx):
    """A real ENOSPC: the workdir on a 900 kB tmpfs (one checkpoint fits, not two)."""
    ref = ctx.shared.reference(ctx)
    mnt = ctx.path("mnt")
    _mount_tmpfs(mnt, "900k")
    try:
        wd = os.path.join(mnt, "wd")
        first = ctx.train(wd)
        saved = checkpoint_steps(wd)
        if first.rc == 0:
            return Seen([first], wrong="completed on a disk too small for its checkpoints")
        _remount(mnt, "size=64m")  # space freed
        second = ctx.train(wd)
        errors = first.error_lines()
        return Seen(
            [first, second] if errors else [first],
            expect="ok" if errors else "error",
            lost=_retrained(wd, saved) or (None if saved else "no checkpoint survived"),
            wrong=differs(wd, ref) if errors and second.rc == 0 else None,
            note=f"{errors[0][:120] if errors else ''}; resumed from {saved}",
        )
    finally:
        _unmount(mnt)


def _signal(sig, step):
    return {"signal_at": [step], "signal": sig}


T = "default smoke: LeNet-5, digits, 12 steps, checkpoint every 4"
CASES = [
    Case("sigterm_step3", "signals", T, "SIGTERM after step 3", resume(_signal("TERM", 3))),
    Case(
        "sigterm_step4",
        "signals",
        T,
        "SIGTERM after step 4 (a save step)",
        resume(_signal("TERM", 4)),
    ),
    Case("sigterm_step11", "signals", T, "SIGTERM after step 11", resume(_signal("TERM", 11))),
    Case(
        "sigterm_twice",
        "signals",
        T,
        "two SIGTERMs after step 5",
        resume({**_signal("TERM", 5), "repeat": 2}),
    ),
    Case("sigint_step5", "signals", T, "SIGINT (Ctrl-C) after step 5", resume(_signal("INT", 5))),
    Case(
        "sigkill_step1",
        "signals",
        T,
        "SIGKILL after step 1 (no checkpoint yet)",
        resume(_signal("KILL", 1)),
    ),
    Case(
        "sigkill_step6",
        "signals",
        T + ", 0.2 s per step",
        "SIGKILL after step 6",
        resume({**_signal("KILL", 6), "sleep_s": 0.2}),
    ),
    Case(
        "sigterm_in_save4",
        "signals",
        T,
        "SIGTERM while save 4 commits",
        resume({"signal_in_save": "TERM", "save_step": 4}),
    ),
    Case(
        "sigkill_in_save8",
        "signals",
        T,
        "SIGKILL while save 8 commits",
        resume({"signal_in_save": "KILL", "save_step": 8}),
    ),
    Case(
        "sigterm_in_final_save",
        "signals",
        T,
        "SIGTERM while the final save commits",
        resume({"signal_in_save": "TERM", "save_step": 12}),
    ),
    Case(
        "sigkill_in_final_save",
        "signals",
        T,
        "SIGKILL while the final save commits",
        resume({"signal_in_save": "KILL", "save_step": 12}),
    ),
    Case(
        "sigterm_sync_saves",
        "signals",
        T + ", synchronous saves",
        "SIGTERM after step 6",
        resume(_signal("TERM", 6), flags=("--config.ckpt.asynchronous=false",)),
    ),
    Case(
        "sigterm_then_sigkill",
        "signals",
        T,
        "SIGTERM after 3, then SIGKILL after 7 of the resume",
        resume(_signal("TERM", 3), chain=(_signal("KILL", 7),)),
    ),
    Case(
        "sigterm_at_startup",
        "signals",
        T,
        "SIGTERM 2 s after start (before step 1)",
        sigterm_at_startup,
    ),
    Case("nan_stop", "nan", T, "NaN pixel in the batch of step 6", nan_stops),
    Case("nan_skip", "nan", T + ", on_nonfinite=skip", "NaN in steps 6 and 7", nan_skips),
    Case(
        "nan_step1",
        "nan",
        T,
        "NaN in step 1 (no checkpoint yet)",
        expect_error(match=r"step 1", fault={"nan_at": [1]}),
    ),
    Case(
        "nan_then_rerun",
        "nan",
        T,
        "NaN at step 6, then the command again (transient)",
        resume({"nan_at": [6]}),
    ),
    Case(
        "lr_1e30",
        "nan",
        T + ", optim.base_lr=1e30",
        "a diverging learning rate",
        expect_error("--config.optim.base_lr=1e30", match=r"step"),
    ),
    Case(
        "full_disk_at_start",
        "disk",
        T,
        "RLIMIT_FSIZE 0 from step 0 (the logs' first writes)",
        full_disk(0, 0),
    ),
    Case(
        "full_disk_after_step2",
        "disk",
        T,
        "no file may grow past 200 B from step 2",
        full_disk(2, 200),
    ),
    Case(
        "full_disk_at_save8",
        "disk",
        T,
        "no file may grow past 64 kB from step 7",
        full_disk(7, 65536),
    ),
    Case(
        "tmpfs_full",
        "disk",
        T + " on a 900 kB tmpfs",
        "ENOSPC at the second save, then space freed",
        tmpfs_full_then_resume,
    ),
]
