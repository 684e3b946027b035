"""Cases of the workdir and the config: read-only or busy workdirs, restarts on a finished run or
with another config, damaged checkpoints and logs, and config values a run must refuse.
"""

import json
import os
import time
from pathlib import Path

from scripts.faults.core import TINY, Case, Seen, changed, differs, snapshot
from scripts.faults.training import (
    STOPPED,
    T,
    _damage,
    _garbage_config,
    _mount_tmpfs,
    _remount,
    _signal,
    _torn_metrics,
    _unmount,
    expect_error,
    resume,
)

SYNC = ("--config.ckpt.asynchronous=false",)  # checkpoints 4 and 8 are complete at step 9


def _slow_kill(step):
    """SIGKILL after `step` of a run slow enough (0.5 s a step) for its saves to complete."""
    return {**_signal("KILL", step), "sleep_s": 0.5}


def readonly_new(ctx):
    mnt = ctx.path("mnt")
    _mount_tmpfs(mnt, "1m", ro=True)
    try:
        return Seen([ctx.train(os.path.join(mnt, "wd"))], match=r"writ|read-only|permission")
    finally:
        _unmount(mnt)


def readonly_resume(ctx):
    """A stopped run's workdir turned read-only, the command again, then writable again."""
    ref = ctx.shared.reference(ctx)
    mnt = ctx.path("mnt")
    _mount_tmpfs(mnt, "64m")
    try:
        wd = os.path.join(mnt, "wd")
        first = ctx.train(wd, fault={"signal_at": [5]})
        before = snapshot(wd)
        _remount(mnt, "ro")
        refused = ctx.train(wd)
        after = snapshot(wd)
        _remount(mnt, "rw")
        final = ctx.train(wd)
        lost = changed(before, after)
        if refused.rc == 0:
            return Seen([first, refused], wrong="exit 0 on a read-only workdir", signals=STOPPED)
        seen = Seen(
            [first, refused], match=r"writ|read-only|permission", lost=lost, signals=STOPPED
        )
        if seen.runs[-1].error_lines() and not lost:
            seen.runs.append(final)
            seen.expect = "ok"
            seen.wrong = differs(wd, ref) if final.rc == 0 else None
            seen.note = refused.error_lines()[0][:150] + "; resumed when writable"
        return seen
    finally:
        _unmount(mnt)


def workdir_is_file(ctx):
    path = ctx.path("file")
    Path(path).write_text("x")
    return Seen([ctx.train(path)], match=r"workdir|director|file")


def two_trainers(ctx):
    wd = ctx.path("wd")
    marker = ctx.path("marker")
    os.makedirs(marker)
    first = ctx.start(
        ["scripts/faults/worker.py", *TINY, f"--workdir={wd}"],
        env={"CNNX_FAULT": json.dumps({"pause_at": 2, "marker": marker})},
    )
    while not os.path.exists(os.path.join(marker, "at")) and first.poll() is None:
        if time.time() > ctx.deadline:
            break
        time.sleep(0.1)
    second = ctx.train(wd)
    Path(marker, "go").touch()
    done = ctx.finish(first)
    seen = Seen([done, second], match=r"pid|in use|another|lock")
    if done.rc != 0:
        seen.wrong = f"the first run did not finish (exit {done.rc}) after the second's start"
    return seen


def finished_rerun(ctx):
    wd = ctx.path("wd")
    ctx.train(wd)
    before = snapshot(wd)
    again = ctx.train(wd)
    return Seen(
        [again],
        expect="ok",
        lost=changed(
            before, snapshot(wd), keep=lambda p: p == "results.json" or "checkpoints" in p
        ),
        note="finished workdir: one line, results.json untouched",
    )


def other_config(*flags):
    def case(ctx):
        wd = ctx.path("wd")
        ctx.train(wd, fault={"signal_at": [5]})
        before = snapshot(wd)
        run = ctx.train(wd, *flags)
        return Seen([run], match=r"->|another run|differ", lost=changed(before, snapshot(wd)))

    return case


CASES = [
    Case(
        "readonly_new_workdir",
        "workdir",
        T + " into a read-only mount",
        "read-only file system",
        readonly_new,
    ),
    Case(
        "readonly_resume",
        "workdir",
        T + ", stopped at 5",
        "workdir remounted read-only, rerun, then writable",
        readonly_resume,
    ),
    Case("workdir_is_a_file", "workdir", T, "--workdir names a file", workdir_is_file),
    Case("two_trainers", "workdir", T, "a second train.py on the running workdir", two_trainers),
    Case("finished_rerun", "workdir", T, "the command again on a finished workdir", finished_rerun),
    Case(
        "other_config",
        "workdir",
        T + ", stopped at 5",
        "restart with optim.base_lr=0.5",
        other_config("--config.optim.base_lr=0.5"),
    ),
    Case(
        "damaged_checkpoint",
        "workdir",
        T + ", synchronous saves, SIGKILL at 9",
        "bytes overwritten in the newest step",
        resume(_slow_kill(9), flags=SYNC, before=_damage("flip")),
    ),
    Case(
        "truncated_checkpoint",
        "workdir",
        T + ", synchronous saves, SIGKILL at 9",
        "the newest step's largest file truncated",
        resume(_slow_kill(9), flags=SYNC, before=_damage("truncate")),
    ),
    Case(
        "emptied_checkpoint",
        "workdir",
        T + ", synchronous saves, SIGKILL at 9",
        "the newest step's files removed",
        resume(_slow_kill(9), flags=SYNC, before=_damage("empty")),
    ),
    Case(
        "torn_metrics_line",
        "workdir",
        T + ", SIGKILL at 6",
        "half a line appended to train_metrics.jsonl",
        resume(_slow_kill(6), before=_torn_metrics),
    ),
    Case(
        "garbage_config_json",
        "workdir",
        T + ", SIGKILL at 6",
        "config.json overwritten with junk",
        resume(_slow_kill(6), before=_garbage_config),
    ),
    Case(
        "width_mult_1000",
        "config",
        T,
        "--config.model.width_mult=1000",
        expect_error("--config.model.width_mult=1000", match=r"[GT]i?B|memory"),
    ),
    Case(
        "unknown_key",
        "config",
        T,
        "--config.model.nme=x",
        expect_error("--config.model.nme=x", match=r"nme"),
    ),
    Case(
        "readme_num_classes",
        "config",
        T,
        "--config.model.num_classes=5",
        expect_error("--config.model.num_classes=5", match=r"num_classes"),
    ),
    Case(
        "image_size_7",
        "config",
        T,
        "--config.data.image_size=7",
        expect_error("--config.data.image_size=7", match=r"7"),
    ),
    Case(
        "image_size_0",
        "config",
        T,
        "--config.data.image_size=0",
        expect_error("--config.data.image_size=0", match=r"image_size"),
    ),
    Case(
        "batch_33_on_2",
        "config",
        T + ", 2 devices",
        "--config.train.batch_size=33",
        expect_error("--config.train.batch_size=33", devices=2, match=r"33"),
    ),
    Case(
        "eval_batch_3_on_2",
        "config",
        T + ", 2 devices",
        "--config.eval.batch_size=3",
        expect_error("--config.eval.batch_size=3", devices=2, match=r"eval"),
    ),
    Case(
        "negative_steps",
        "config",
        T,
        "--config.train.num_steps=-5",
        expect_error("--config.train.num_steps=-5", match=r"num_steps"),
    ),
    Case(
        "batch_not_a_number",
        "config",
        T,
        "--config.train.batch_size=abc",
        expect_error("--config.train.batch_size=abc", match=r"batch_size|abc"),
    ),
    Case(
        "unknown_model",
        "config",
        T,
        "--config.model.name=lenet6",
        expect_error("--config.model.name=lenet6", match=r"lenet6"),
    ),
    Case(
        "unknown_optimizer",
        "config",
        T,
        "--config.optim.name=sgdd",
        expect_error("--config.optim.name=sgdd", match=r"sgdd"),
    ),
    Case(
        "unknown_schedule",
        "config",
        T,
        "--config.schedule.name=cosin",
        expect_error("--config.schedule.name=cosin", match=r"cosin"),
    ),
    Case(
        "unknown_pp_op",
        "config",
        T,
        "--config.data.train_pp=resize|bogus",
        expect_error("--config.data.train_pp=resize|bogus", match=r"bogus"),
    ),
    Case(
        "unknown_source",
        "config",
        T,
        "--config.data.source=digitz",
        expect_error("--config.data.source=digitz", match=r"digitz"),
    ),
    Case(
        "missing_config_file",
        "config",
        "configs/nope.py",
        "a config file that does not exist",
        expect_error(base=["--config=configs/nope.py"], match=r"nope"),
    ),
    Case(
        "config_arg_typo",
        "config",
        "configs/default.py:smok",
        "a typo in the config's arg",
        expect_error(base=["--config=configs/default.py:smok"], match=r"smok"),
    ),
]
