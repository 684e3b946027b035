"""Training: the loop and everything it is assembled from.

Import the submodule you need; this package imports nothing itself (the trainer loads without
TensorFlow until data is read; the config schema is `cnnx.config_schema`).

  experiment     what a config implies before the first step: source, model, mesh, input checks
  build          the assembly shared by training, eval.py, FixRes and the linear probe
  state          `TrainState`, created sharded
  memory         the train state's size against the devices' memory, before creating it
  steps          the train and eval steps; `make_train_step`, the one place a step is jitted
  losses         classification losses by name (`train.loss`)
  distill        knowledge distillation: the frozen teacher and its losses (`train.distill`)
  optim          optimizers and learning-rate schedules
  layer_decay    layer-wise learning-rate decay over the family's depths (`optim.layer_decay`)
  finetune       initialising from other weights, new heads, frozen or slower layers
  checkpoint     orbax checkpoints: asynchronous saves, restore, integrity checks
  fingerprint    the per-array fingerprints every checkpoint records
  workdir        a run's workdir: layout, atomic writes, identity (config.json)
  lock           the workdir's lock: one writer per workdir
  loop           `train_and_evaluate(config, workdir)`
  preemption     SIGTERM → the step every process stops and saves at
  feeding        batches prefetched to the device, a bound on the steps in flight
  metrics_log    TensorBoard, train_metrics.jsonl and the log line
  event_files    TensorBoard event files written without TensorFlow (gs:// mirrored)
  health         warnings for diverging or stuck runs
  profiling      the data-wait / compute split and jax.profiler traces
  throughput     images/s per chip, TFLOP/s from XLA's cost analysis, MFU, host share
  linear_probe   the linear-probe fast path (features once, head only)
  distributed    multi-process start-up (`jax.distributed`)
  compile_cache  JAX's persistent compilation cache
  logs           logging set-up for the entry points
"""
