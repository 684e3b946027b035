"""Linear probe fast path: compute the frozen backbone's features once, train only the head.

A linear probe through the normal loop runs the whole frozen network forward every step. When
the training preprocessing is deterministic (no augmentation) the features of an example never
change, so this path computes them once per example and trains the classifier on them with the
same optimizer, schedule and batch order (the pipeline's `index` field) as the slow path —
giving the same head to float tolerance, much faster. The head is written back into the full
model's parameters and saved as a normal checkpoint, so eval.py and fine-tuning work on it.
"""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cnnx.data import to_global
from cnnx.errors import ConfigError
from cnnx.parallel.mesh import batch_sharding, replicated
from cnnx.process_defaults import import_tensorflow
from cnnx.train import finetune, lock, optim
from cnnx.train import workdir as wd
from cnnx.train.build import (
    agree_with_process_0,
    evaluate_state,
    init_state,
    make_eval_fn,
    make_eval_input,
    make_schedule,
    make_train_input,
    make_tx,
    train_steps,
)
from cnnx.train.checkpoint import Checkpointer
from cnnx.train.experiment import build_model, setup
from cnnx.train.state import TrainState
from cnnx.train.steps import StepOptions, make_train_step


def find_head(params, pattern: str) -> tuple[str, ...]:
    """The module path of the single linear classifier matching `pattern`."""
    import re

    flat = traverse_util.flatten_dict(params)
    kernels = [k[:-1] for k in flat if k[-1] == "kernel" and re.search(pattern, "/".join(k))]
    if len(kernels) != 1 or flat[(*kernels[0], "kernel")].ndim != 2:
        raise ConfigError(
            f"The fast linear probe needs exactly one linear head matching {pattern!r}; found "
            f"{['/'.join(k) for k in kernels]}. Use the normal path (fast_linear_probe=False)."
        )
    return kernels[0]


def extract_features(exp, variables, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Backbone features (num_classes=0) and labels of every example of a split, in order."""
    from cnnx.data.pp import build as build_pp

    tf = import_tensorflow("--config.train.fast_linear_probe=True")

    feature_model = build_model(exp.config, 0)[1]
    pp = build_pp(exp.config.data.train_pp, exp.pp_context(train=True))
    ds = exp.source.dataset(split, process_index=0, process_count=1, drop_remainder=False, seed=0)
    ds = ds.enumerate().map(
        lambda i, e: pp({**exp.source.load(e), "seed": tf.stack([tf.constant(0, tf.int64), i])})
    )
    apply = jax.jit(functools.partial(feature_model.apply, train=False))
    feats, labels = [], []
    for batch in ds.batch(exp.config.eval.batch_size).as_numpy_iterator():
        feats.append(np.asarray(apply(variables, batch["image"])))
        labels.append(batch["label"])
    return np.concatenate(feats), np.concatenate(labels)


def _head_apply(head_path):
    """A `model.apply` stand-in for the head alone: features (B, D) -> logits (B, K)."""

    def apply(variables, features, train=False, mutable=(), rngs=None):
        del train, rngs
        head = variables["params"]
        for name in head_path:
            head = head[name]
        logits = features @ head["kernel"] + head["bias"]
        return (logits, {}) if mutable else logits

    return apply


def _train_head(exp, head_path, head, schedule, features, labels, train_input, total) -> dict:
    """Trains the head with the trainer's step (`steps.make_train_step`) on cached features,
    in the pipeline's batch order; returns the trained kernel, bias and the last loss."""
    config = exp.config
    if config.train.mixup_alpha or config.train.cutmix_alpha:
        raise ConfigError(
            "fast_linear_probe trains on cached features, which cannot be mixed as images "
            "are: set --config.train.mixup_alpha=0 and cutmix_alpha=0, or use the normal path "
            "(fast_linear_probe=False)."
        )
    head_tx = optim.make_optimizer(config.optim, schedule)
    params = traverse_util.unflatten_dict({(*head_path, k): v for k, v in head.items()})
    rep = replicated(exp.mesh)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats={},
        opt_state=head_tx.init(params),
        apply_fn=_head_apply(head_path),
        tx=head_tx,
    )
    shardings = jax.tree.map(lambda _: rep, state)
    state = jax.device_put(state, shardings)
    step = make_train_step(
        num_classes=head["kernel"].shape[-1],
        schedule=schedule,
        mesh=exp.mesh,
        state_shardings=shardings,
        options=StepOptions.from_config(config.train),
    )
    rng = jax.device_put(jax.random.PRNGKey(0), rep)  # unused: no dropout, no mixing
    metrics = {"loss": jnp.nan}
    for i, batch in enumerate(train_input.iterate(0)):
        if i == total:
            break
        idx = np.asarray(batch["index"])  # host-side gather, as the pipeline's own batches
        batch = {"image": features[idx], "label": labels[idx]}
        state, metrics = step(state, to_global(batch, batch_sharding(exp.mesh)), rng)
    flat = traverse_util.flatten_dict(state.params)
    return {
        "kernel": flat[(*head_path, "kernel")],
        "bias": flat[(*head_path, "bias")],
        "loss": metrics["loss"],
    }


def run(config, workdir: str, *, allow_config_change: bool = False) -> dict:
    """Trains a linear head on cached features; returns results like `train_and_evaluate`.

    The workdir rules are those of `train_and_evaluate`: another run's workdir is refused
    (unless `allow_config_change`), the workdir is locked, a finished probe is not redone.
    """
    if not (config.init.checkpoint or config.init.torch_weights):
        raise ConfigError("fast_linear_probe needs --config.init.checkpoint or init.torch_weights.")
    wd.check_folder(workdir)
    changes = wd.check_same_run(workdir, config, allow_change=allow_config_change)
    with lock.locked(workdir, take=jax.process_index() == 0, agree=agree_with_process_0()):
        return _run(config, workdir, changes)


def _run(config, workdir: str, changes: dict) -> dict:
    t0 = time.time()
    exp = setup(config)
    finetune.check_init_normalization(config, exp.spec.name)
    if not exp.source.global_order:
        raise ConfigError("fast_linear_probe supports in-memory and folder sources only.")
    train_input = make_train_input(exp)
    spe = train_input.steps_per_epoch
    total = train_steps(config, spe)
    finished = wd.finished_results(workdir, total)
    if finished is not None:
        return {**finished, "already_finished": True}
    schedule = make_schedule(config, spe, total)
    tx = make_tx(config, schedule)
    state, shardings = init_state(exp, tx, jax.random.split(jax.random.PRNGKey(config.seed))[0])
    state = finetune.initialize_from(state, config.init, exp.spec.name, shardings)
    head_path = find_head(state.params, config.init.head_pattern or finetune.DEFAULT_HEAD_PATTERN)
    t_feat = time.time()
    features, labels = extract_features(exp, state.eval_variables(), config.data.train_split)
    t_feat = time.time() - t_feat

    flat = traverse_util.flatten_dict(state.params)
    head = {"kernel": flat[(*head_path, "kernel")], "bias": flat[(*head_path, "bias")]}
    head = _train_head(exp, head_path, head, schedule, features, labels, train_input, total)

    flat[(*head_path, "kernel")], flat[(*head_path, "bias")] = head["kernel"], head["bias"]
    state = state.replace(
        step=jnp.asarray(total, jnp.int32), params=traverse_util.unflatten_dict(flat)
    )
    state = jax.device_put(state, shardings)
    ckpt = Checkpointer(wd.checkpoints_dir(workdir), asynchronous=False)
    ckpt.save(total, state, wait=True)
    ckpt.close()
    metrics = evaluate_state(
        exp, state.eval_variables(), make_eval_input(exp), make_eval_fn(exp, exp.model.num_classes)
    )
    results = {
        "status": "completed",
        "step": total,
        "model": exp.spec.name,
        "train/loss": float(head.pop("loss")),
        "feature_seconds": t_feat,
        "wall_time_s": time.time() - t0,
        **metrics,
    }
    if jax.process_index() == 0:
        if changes:
            wd.record_config_change(workdir, changes, total)
        wd.write_text_atomic(
            wd.config_path(workdir), config.to_json_best_effort(indent=2, sort_keys=True)
        )
        wd.write_json_atomic(wd.results_path(workdir), results)
    return results
