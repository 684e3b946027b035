"""Sweeps: grid search over scaling coefficients (EfficientNet §3.3, any family) and FixRes.

Import the submodule you need; this package imports nothing itself.

  spec     sweep files (`get_sweep(arg)` -> base config + trials of dotted overrides), shards
  results  crash-safe append-only JSONL results (one file per shard), forgiving reader
  worker   one trial: `python -m cnnx.sweeps.worker` (train, params, MACs)
  runner   the driver: skip finished trials, run the rest in subprocesses, record each
  report   best trial, markdown table, accuracy-against-FLOPs PNG
  grid     the α·β²·γ² ≈ 2 grid, φ scaling, the published B1–B7 table
  fixres   FixRes: train at R_train, test at R_test, fine-tune classifier + BN at R_test
"""
