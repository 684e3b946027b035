"""Sweeps: grid search over scaling coefficients (EfficientNet §3.3, any family), sampler-driven
searches, and FixRes.

Import the submodule you need; this package imports nothing itself.

  spec     sweep files (`get_sweep(arg)` -> base config + trials of dotted overrides, or ranges
           and a budget for a sampler), trial keys and folder names
  storage  the study's storage: journal file or PostgreSQL, heartbeats, retries of dead trials,
           storage calls that wait out a database restart or a full disk
  journal  the journal file: a damaged line named (byte offset, repair), a torn last one cut
  study    Optuna: the exact grid enqueued, TPE/random search, one worker's trial loop
           (several processes of a slice training each trial together)
  sizes    a trial's config as it runs: sizes a scaling rule derives, snapped to the nearest
           size the model accepts (grid γ, φ, FixRes test sizes)
  runner   one trial in a subprocess (crash isolation) or in-process
  worker   one trial: `python -m cnnx.sweeps.worker` (train, params, MACs, TensorBoard hparams)
  results  the JSON Lines export of trial records (readable without Optuna), forgiving reader
  report   best trial, markdown table, accuracy-against-MACs PNG
  compare  many runs' results in one table (scripts/results.py): MACs, every evaluator, plot
  grid     the α·β²·γ² ≈ 2 grid, φ scaling, the published B1–B7 table
  fixres   FixRes: train at R_train, test at R_test, fine-tune classifier + BN at R_test
"""
