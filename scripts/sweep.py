"""Run a sweep: every trial of a sweep file, recorded crash-safely, then a summary and a plot.

    python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py:digits --workdir=DIR
    python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py --workdir=DIR --dry-run
    python scripts/sweep.py --sweep=... --workdir=gs-or-nfs-dir --shard=1/4   # host 1 of 4

Restarting the same command skips finished trials and resumes the interrupted one from its
checkpoint. `--summarize_only` rebuilds the summary from all shards' results files.
Outputs in DIR: results[.shard-i-of-n].jsonl, trials/<key>/ (one training workdir per trial),
summary.md, summary.json, accuracy_vs_flops.png.

Several processes (one per host of a slice, each trial using all of them): every process runs
the same command, with --coordinator_address, --num_processes and --process_id, or detected on
Cloud TPU / SLURM / Open MPI as for train.py. The sweep is then one jax.distributed job: trials
run in-process, one after another on all processes, and only process 0 records results and
writes the summary. (--shard=i/n instead splits the trials between independent jobs.)
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cnnx.backends.cpu import flags as xla_flags

xla_flags.apply()  # before JAX starts: XLA reads XLA_FLAGS once


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", required=True, help="sweep file path[:arg]")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--dry-run", "--dry_run", action="store_true", help="list the trials")
    parser.add_argument("--shard", default=None, help="i/n: run trials with index %% n == i")
    parser.add_argument(
        "--in-process", "--in_process", action="store_true", help="no subprocess per trial"
    )
    parser.add_argument("--retry-failed", "--retry_failed", action="store_true")
    parser.add_argument("--summarize-only", "--summarize_only", action="store_true")
    from cnnx.train import distributed

    distributed.add_arguments(parser)
    args = parser.parse_args(argv)

    from cnnx.errors import CnnxError
    from cnnx.sweeps import report, results, runner
    from cnnx.sweeps.spec import load_sweep, parse_shard, shard_trials

    try:
        shard, num_shards = parse_shard(args.shard)
        sweep = load_sweep(args.sweep)
    except (CnnxError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mine = shard_trials(sweep.trials, shard, num_shards)
    if args.dry_run:
        done = results.latest_by_key(results.read_all(args.workdir))
        print(f"{args.sweep}: {len(sweep.trials)} trials; shard {shard}/{num_shards}: {len(mine)}")
        print(f"base model {sweep.base.model.name}, data {sweep.base.data.source}")
        for t in mine:
            status = done.get(t.key, {}).get("status", "pending")
            print(f"  {t.index:>4}  {t.key}  {status:<9}  {t.overrides}")
        return 0
    if not args.summarize_only:
        try:
            # Several processes: one job for the whole sweep, so its trials run in-process.
            several = distributed.initialize_from_args(args)
        except CnnxError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
        from cnnx.train import logs

        logs.configure()
        writer = not several or distributed.is_writer()
        state = runner.run_sweep(
            sweep,
            args.workdir,
            shard=shard,
            num_shards=num_shards,
            isolate=not (args.in_process or several),
            retry_failed=args.retry_failed,
            record=writer,
        )
        if state == "interrupted":
            return 143
        if not writer:
            return 0
    print()
    print(report.summarize(sweep, results.read_all(args.workdir), args.workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
