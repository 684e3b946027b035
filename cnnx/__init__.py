"""cnnx: image classification architectures in JAX/Flax, with the tools to train and study them.

Importing cnnx changes nothing in the process: the entry points (train.py, eval.py,
scripts/*.py) set cnnx's process defaults themselves (`cnnx.process_defaults.apply()`).

Its parts, lowest floor first (each imports only parts below it: tests/test_import_floors.py):

  errors, script_flags      the error contract; the scripts' shared flags
  backends                  the one door to platform kernels; the CNNX_* switches
  process_defaults          what an entry point sets in its process
  layers, data, parallel    shared blocks; sources, ops and pipelines; mesh and sharding
  models                    the registry, the model contract and one module per family
  convert, evaluate         weight conversion; the evaluators
  train                     the trainer and its config schema
  analysis                  static model analysis and benchmarks of the real step
  cli, checkpoint_eval      the entry points' plumbing; eval.py's driver
  sweeps                    Optuna studies, compound scaling, FixRes
"""

__version__ = "0.1.0"
