"""Cases of storage: gs:// (the Cloud Storage emulator: outage, damaged object, unreachable
endpoint, missing bucket), the compilation cache, and eval.py on workdirs in every state.
"""

import contextlib
import glob
import os
import signal
import time
from pathlib import Path

from scripts.faults.core import TINY, Case, Seen, changed, checkpoint_steps, differs, snapshot
from scripts.faults.services import Emulator, free_port, service
from scripts.faults.training import STOPPED, _damage, _mount_tmpfs, _remount, _unmount


def _gs_outcome(gcs, url: str, local: str) -> dict:
    fs = gcs.fs()
    os.makedirs(local, exist_ok=True)
    for name in ("train_metrics.jsonl", "results.json"):
        with contextlib.suppress(FileNotFoundError):
            fs.get(f"{url}/{name}", os.path.join(local, name))
    return local


def gcs_resume(fault=None, *, outage_s=0.0, damage=False, flags=()):
    """train.py on gs://: a fault, then the same command; the end equals the local run's."""

    def case(ctx):
        gcs = service(ctx, "gcs", Emulator)
        ref = ctx.shared.reference(ctx, tuple(flags))
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
            Path(f"{marker}/go").touch()
            time.sleep(outage_s)
            gcs.proc.send_signal(signal.SIGCONT)
            runs.append(ctx.finish(proc))
        else:
            runs.append(ctx.train(wd, *flags, fault=fault, env=gcs.env))
        if damage:
            fs = gcs.fs()
            steps = sorted(
                int(p.rsplit("/", 1)[1])
                for p in fs.ls(f"{wd}/checkpoints")
                if p.rsplit("/", 1)[1].isdigit()
            )
            files = [f for f in fs.find(f"{wd}/checkpoints/{steps[-1]}")]
            biggest = max(files, key=lambda f: fs.size(f))
            data = bytearray(fs.cat(biggest))
            data[len(data) // 2 : len(data) // 2 + 32] = b"\xde\xad\xbe\xef" * 8
            fs.pipe(biggest, bytes(data))
        if runs[-1].rc != 0 or fault or damage:
            runs.append(ctx.train(wd, *flags, env=gcs.env))
        local = _gs_outcome(gcs, wd, ctx.path("fetched"))
        return Seen(
            runs,
            expect="any" if damage else "ok",  # damage: one clear error line is an outcome too
            wrong=differs(local, ref) if runs[-1].rc == 0 else None,
            signals=STOPPED,
            note=f"exits {[r.rc for r in runs]}; the end equals the local uninterrupted run",
        )

    return case


def gcs_error(bucket=None, unreachable=False, match=None):
    def case(ctx):
        gcs = service(ctx, "gcs", Emulator)
        env = dict(gcs.env)
        if unreachable:
            url = f"http://127.0.0.1:{free_port()}"
            env.update(STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url)
        wd = f"gs://{bucket}/wd" if bucket else gcs.folder()
        return Seen([ctx.train(wd, env=env)], match=match)

    return case


def gcs_eval(ctx):
    gcs = service(ctx, "gcs", Emulator)
    wd = gcs.folder()
    ctx.train(wd, env=gcs.env)
    run = ctx.run(["eval.py", f"--workdir={wd}"], env=gcs.env)
    ok = "top" in run.out.lower()
    return Seen(
        [run],
        expect="ok",
        wrong=None if ok else "no metrics printed",
        note="eval.py on gs:// printed its metrics",
    )


# --- compilation cache, eval.py ------------------------------------------------------------


def cache_fault(how: str):
    def case(ctx):
        ref = ctx.shared.reference(ctx)
        cache = ctx.path("cache")
        runs = (
            [ctx.train(ctx.path("first"), f"--compilation_cache={cache}")] if how != "file" else []
        )
        if how in ("junk", "truncate"):
            for path in glob.glob(f"{cache}/**/*", recursive=True):
                if os.path.isfile(path):
                    size = os.path.getsize(path)
                    if how == "junk":
                        Path(path).write_bytes(os.urandom(size))
                    else:
                        os.truncate(path, size // 2)
        elif how == "file":
            Path(cache).write_text("not a folder")
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
        return Seen(
            runs,
            expect="any",
            wrong=differs(ctx.path("wd"), ref) if final.rc == 0 else None,
            note="completed, equal to the run without the fault",
        )

    return case


def eval_running(ctx):
    wd = ctx.path("wd")
    train = ctx.start(
        [
            "scripts/faults/worker.py",
            *TINY,
            "--config.train.num_steps=60",
            "--config.ckpt.every_steps=2",
            "--config.ckpt.max_to_keep=1",
            f"--workdir={wd}",
        ],
        env={"CNNX_FAULT": '{"sleep_s": 0.15}'},
    )
    while not checkpoint_steps(wd) and train.poll() is None:
        time.sleep(0.2)
    evals = [ctx.run(["eval.py", f"--workdir={wd}"]) for _ in range(2)]
    done = ctx.finish(train)
    failed = [r for r in evals if r.rc != 0]
    silent = [r for r in evals if r.rc == 0 and "top" not in r.out.lower()]
    return Seen(
        [*evals, done, *failed[:1]],
        expect="ok",
        note=f"2 evals of a running workdir: exits {[r.rc for r in evals]}",
        wrong="an evaluation printed no metrics" if silent else None,
    )


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
        return Seen(
            [run],
            expect="error" if prepare != "damaged" else "any",
            match=match,
            lost=changed(before, snapshot(wd), keep=lambda p: "checkpoints" in p),
        )

    return case


def eval_readonly(ctx):
    mnt = ctx.path("mnt")
    _mount_tmpfs(mnt, "64m")
    try:
        wd = os.path.join(mnt, "wd")
        ctx.train(wd)
        _remount(mnt, "ro")
        return Seen(
            [ctx.run(["eval.py", f"--workdir={wd}"])], expect="any", match=r"output|writ|read-only"
        )
    finally:
        _unmount(mnt)


def eval_output_new_folder(ctx):
    wd, out = ctx.path("wd"), ctx.path("new", "deeper", "r.json")
    ctx.train(wd)
    run = ctx.run(["eval.py", f"--workdir={wd}", f"--output={out}"])
    return Seen(
        [run],
        expect="ok",
        wrong=None if os.path.exists(out) else f"{out} not written",
        note="--output folder made",
    )


G = "default smoke on gs:// (the emulator)"
CASES = [
    Case(
        "gcs_sigkill_step6",
        "gcs",
        G,
        "SIGKILL after step 6",
        gcs_resume({"signal_at": [6], "signal": "KILL", "sleep_s": 0.2}),
    ),
    Case("gcs_sigterm_step5", "gcs", G, "SIGTERM after step 5", gcs_resume({"signal_at": [5]})),
    Case(
        "gcs_sigkill_in_save8",
        "gcs",
        G,
        "SIGKILL while save 8 commits",
        gcs_resume({"signal_in_save": "KILL", "save_step": 8}),
    ),
    Case(
        "gcs_outage_8s",
        "gcs",
        G,
        "the emulator stopped (SIGSTOP) 8 s after step 5",
        gcs_resume(outage_s=8.0),
        timeout_s=120,
    ),
    Case(
        "gcs_damaged_object",
        "gcs",
        G + ", synchronous saves, SIGKILL at 9",
        "bytes overwritten in the newest step's largest object",
        gcs_resume(
            {"signal_at": [9], "signal": "KILL"},
            damage=True,
            flags=("--config.ckpt.asynchronous=false",),  # checkpoints 4 and 8 complete at 9
        ),
    ),
    Case(
        "gcs_unreachable",
        "gcs",
        G,
        "the endpoint refuses connections",
        gcs_error(unreachable=True, match=r"endpoint|reach|credential|127\.0\.0\.1"),
    ),
    Case(
        "gcs_missing_bucket",
        "gcs",
        G,
        "gs://no-such-bucket-cnnx/wd",
        gcs_error(bucket="no-such-bucket-cnnx", match=r"bucket"),
    ),
    Case("gcs_eval", "gcs", G, "eval.py on the finished gs:// workdir", gcs_eval),
    Case(
        "cache_junk_entries",
        "cache",
        "default smoke, a fresh cache",
        "every cache entry overwritten with random bytes",
        cache_fault("junk"),
    ),
    Case(
        "cache_truncated_entries",
        "cache",
        "default smoke, a fresh cache",
        "every cache entry cut in half",
        cache_fault("truncate"),
    ),
    Case(
        "cache_dir_is_a_file",
        "cache",
        "default smoke",
        "--compilation_cache names a file",
        cache_fault("file"),
    ),
    Case(
        "cache_dir_readonly",
        "cache",
        "default smoke",
        "--compilation_cache on a read-only mount",
        cache_fault("readonly"),
    ),
    Case(
        "eval_running_workdir",
        "eval",
        "default smoke, 60 steps, a save every 2, max_to_keep 1",
        "eval.py twice while it trains",
        eval_running,
        timeout_s=120,
    ),
    Case(
        "eval_empty_workdir",
        "eval",
        "an empty folder",
        "eval.py on it",
        eval_error(prepare="empty", match=r"checkpoint|config"),
    ),
    Case(
        "eval_missing_step",
        "eval",
        "a finished default smoke",
        "eval.py --step=999",
        eval_error("--step=999", match=r"999"),
    ),
    Case(
        "eval_damaged_newest",
        "eval",
        "default smoke, SIGKILL at 9",
        "bytes overwritten in the newest step, eval.py",
        eval_error(prepare="damaged", match=r"step"),
    ),
    Case(
        "eval_readonly_workdir",
        "eval",
        "a finished default smoke on a read-only mount",
        "eval.py",
        eval_readonly,
    ),
    Case(
        "eval_output_new_folder",
        "eval",
        "a finished default smoke",
        "eval.py --output into folders that do not exist",
        eval_output_new_folder,
    ),
]
