"""cnnx: image classification architectures in JAX/Flax, with the tools to train and study them.

Importing cnnx changes nothing in the process: the entry points (train.py, eval.py,
scripts/*.py) set cnnx's process defaults themselves (`cnnx.process_defaults.apply()`).

Its parts, lowest floor first (each imports only parts below it: tests/test_import_floors.py):

  errors, script_flags      the error contract; the scripts' shared flags
  image_stats, accuracy     ImageNet / Inception mean and std; top-k (train step and evaluators)
  backends, config_schema   the one door to platform kernels and the CNNX_* switches; the
                            config schema (imports neither TensorFlow nor JAX)
  process_defaults          what an entry point sets in its process; the one TensorFlow importer
  layers, parallel          shared blocks; mesh and sharding
  data, models              sources, ops and pipelines; the registry, the model contract and
                            one module per family
  convert, evaluate         weight conversion; the evaluators
  train                     the trainer
  analysis                  static model analysis and benchmarks of the real step
  cli, checkpoint_eval      the entry points' plumbing; eval.py's driver
  export                    weights out (torchvision, timm, safetensors) and serving artefacts
  sweeps                    Optuna studies, compound scaling, FixRes
  findings                  the lessons of the field, rerun: claims, runs, verdicts, figures
"""

__version__ = "0.1.0"
