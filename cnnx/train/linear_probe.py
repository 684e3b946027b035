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
import optax
from flax import traverse_util

from cnnx.errors import ConfigError
from cnnx.train import finetune, losses, optim
from cnnx.train import workdir as wd
from cnnx.train.checkpoint import Checkpointer
from cnnx.train.experiment import build_model, setup
from cnnx.train.loop import (
    agree_with_process_0,
    evaluate_state,
    init_state,
    make_eval_fn,
    make_eval_input,
    make_train_input,
    make_tx,
    train_steps,
)


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
    import tensorflow as tf

    from cnnx.data import preprocess

    feature_model = build_model(exp.config, 0)[1]
    pp = preprocess.build(exp.config.data.train_pp, exp.pp_context(train=True))
    ds = exp.source.dataset(split, process_index=0, process_count=1, drop_remainder=False,
                            seed=0)  # fmt: skip
    ds = ds.enumerate().map(
        lambda i, e: pp({**exp.source.load(e), "seed": tf.stack([tf.constant(0, tf.int64), i])})
    )
    apply = jax.jit(functools.partial(feature_model.apply, train=False))
    feats, labels = [], []
    for batch in ds.batch(exp.config.eval.batch_size).as_numpy_iterator():
        feats.append(np.asarray(apply(variables, batch["image"])))
        labels.append(batch["label"])
    return np.concatenate(feats), np.concatenate(labels)


def run(config, workdir: str, *, allow_config_change: bool = False) -> dict:
    """Trains a linear head on cached features; returns results like `train_and_evaluate`.

    The workdir rules are those of `train_and_evaluate`: another run's workdir is refused
    (unless `allow_config_change`), the workdir is locked, a finished probe is not redone.
    """
    if not (config.init.checkpoint or config.init.torch_weights):
        raise ConfigError("fast_linear_probe needs --config.init.checkpoint or init.torch_weights.")
    wd.check_folder(workdir)
    changes = wd.check_same_run(workdir, config, allow_change=allow_config_change)
    with wd.locked(workdir, take=jax.process_index() == 0, agree=agree_with_process_0()):
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
    schedule = optim.make_schedule(
        config.schedule, optim.scaled_lr(config.optim.base_lr, config.train.batch_size), spe, total
    )
    tx = make_tx(config, schedule)
    state, shardings = init_state(exp, tx, jax.random.split(jax.random.PRNGKey(config.seed))[0])
    state = finetune.initialize_from(state, config.init, exp.spec.name, shardings)
    head_path = find_head(state.params, config.init.head_pattern or finetune.DEFAULT_HEAD_PATTERN)
    t_feat = time.time()
    features, labels = extract_features(exp, state.eval_variables(), config.data.train_split)
    t_feat = time.time() - t_feat

    flat = traverse_util.flatten_dict(state.params)
    head = {"kernel": flat[(*head_path, "kernel")], "bias": flat[(*head_path, "bias")]}
    head_tx = optim.make_optimizer(config.optim, schedule)
    nest = lambda h: traverse_util.unflatten_dict(  # noqa: E731
        {(*head_path, k): v for k, v in h.items()}
    )
    opt_state = head_tx.init(nest(head))
    num_classes = head["kernel"].shape[-1]

    @jax.jit
    def step(head, opt_state, feats, labels):
        def loss_fn(h):
            logits = feats @ h["kernel"] + h["bias"]
            return jnp.mean(losses.cross_entropy(
                logits, labels, num_classes, config.train.label_smoothing))  # fmt: skip

        loss, grads = jax.value_and_grad(loss_fn)(head)
        updates, opt_state = head_tx.update(nest(grads), opt_state, nest(head))
        updates = {k: traverse_util.flatten_dict(updates)[(*head_path, k)] for k in head}
        return optax.apply_updates(head, updates), opt_state, loss

    features = jnp.asarray(features)
    for i, batch in enumerate(train_input.iterate(0)):
        if i == total:
            break
        idx = jnp.asarray(batch["index"])
        head, opt_state, loss = step(head, opt_state, features[idx], jnp.asarray(labels)[idx])

    flat[(*head_path, "kernel")], flat[(*head_path, "bias")] = head["kernel"], head["bias"]
    state = state.replace(step=jnp.asarray(total, jnp.int32),
                          params=traverse_util.unflatten_dict(flat))  # fmt: skip
    state = jax.device_put(state, shardings)
    ckpt = Checkpointer(wd.checkpoints_dir(workdir), asynchronous=False)
    ckpt.save(total, state, wait=True)
    ckpt.close()
    metrics = evaluate_state(exp, state.eval_variables(), make_eval_input(exp),
                             make_eval_fn(exp, exp.model.num_classes))  # fmt: skip
    results = {"status": "completed", "step": total, "model": exp.spec.name,
               "train/loss": float(loss), "feature_seconds": t_feat,
               "wall_time_s": time.time() - t0, **metrics}  # fmt: skip
    if jax.process_index() == 0:
        if changes:
            wd.record_config_change(workdir, changes, total)
        wd.write_text_atomic(
            wd.config_path(workdir), config.to_json_best_effort(indent=2, sort_keys=True)
        )
        wd.write_json_atomic(wd.results_path(workdir), results)
    return results
