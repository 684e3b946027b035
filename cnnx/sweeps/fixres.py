"""FixRes (Touvron et al., "Fixing the train-test resolution discrepancy", NeurIPS 2019).

Random-resized-crop training makes objects look larger than the centre crop shown at test
time, so a network trained at R_train is often best tested at a *higher* R_test (§3); the
apparent-size shift also moves the activation statistics, which a short fine-tuning at R_test
with test-time preprocessing repairs: BatchNorm statistics are re-estimated at R_test and the
classifier (optionally BN affine parameters or the last N blocks) is updated, the rest frozen
(§4). This module runs the whole protocol:

  1. train at each R_train (`cnnx.train.loop.train_and_evaluate`, resumable workdir),
  2. evaluate that checkpoint at every R_test (resize to R_test / crop_pct, centre crop),
  3. fine-tune at each R_test and evaluate again,
and returns the R_train × R_test table before and after fine-tuning.

Each evaluation goes through the evaluator registry like the training loop's and eval.py's:
one `config.evals` entry per test size and crop ratio (`evaluator_name`: 'test_32px',
'test_32px_crop0p875'), made from the run's 'eval' entry with that size and crop, so its
metrics are '<name>/top1', '<name>/loss', '<name>/ece', ... fixres.json keeps the top-1 tables
('before', 'after') it always had and adds each cell's metrics to its row ('before_metrics',
'after_metrics'); `load_table` reads both forms.

The fine-tuning runs the trainer's step (`cnnx.train.steps.make_train_step`) in a small loop
of its own rather than the trainer with an `init` checkpoint and a `trainable` regex: it
keeps the pretrained variables in memory across all R_test values (no checkpoint per
resolution), feeds the *test-time* preprocessing, and keeps BatchNorm in train mode even for
frozen layers, so their running statistics move to R_test while
their weights stay fixed (`optax.set_to_zero` on the frozen leaves). Resolution-dependent
parameters (a ViT's position embedding) are interpolated with `vit.resize_pos_embed`.
"""

import io
import json
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from etils import epath

from cnnx.data import TrainInput, to_global
from cnnx.evaluate import entries
from cnnx.models.registry import model_fields, options
from cnnx.parallel.mesh import batch_sharding, replicated
from cnnx.sweeps.spec import apply_overrides
from cnnx.train.build import make_evaluators
from cnnx.train.distributed import is_writer
from cnnx.train.experiment import process_info, setup
from cnnx.train.loop import train_and_evaluate
from cnnx.train.state import TrainState
from cnnx.train.steps import StepOptions, make_train_step
from cnnx.train.workdir import write_json_atomic

# Classifier plus every normalisation layer (ConvNormAct's `bn`, `bn1`, `norm1`, ...).
DEFAULT_TRAINABLE = r"(^|/)head/|(^|/)(bn|norm)[^/]*/"


def _path(keys) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in keys)


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def last_blocks(params, n: int) -> list[str]:
    """Names of the last `n` top-level blocks (`stage4_block1`, `block11`, ...) in network order."""
    if n <= 0:
        return []
    blocks = sorted((k for k in params if re.search(r"block|layer", k)), key=_natural)
    return blocks[-n:]


def trainable_mask(params, regex: str = DEFAULT_TRAINABLE, last_n_blocks: int = 0):
    """True for the leaves fine-tuning updates: '/'-joined path matches `regex`, or the leaf is
    inside one of the last `last_n_blocks` blocks."""
    pattern = re.compile(regex) if regex else None
    blocks = tuple(last_blocks(params, last_n_blocks))

    def pick(keys, _):
        path = _path(keys)
        return bool(pattern and pattern.search(path)) or path.split("/")[0] in blocks

    return jax.tree_util.tree_map_with_path(pick, params)


def at_resolution(config, res: int, crop_pct: float | None = None) -> ml_collections.ConfigDict:
    """`config` with train and eval resolution `res` (and the eval crop ratio)."""
    overrides = {"data.image_size": res, "data.eval_image_size": res}
    if crop_pct is not None:
        overrides["data.crop_pct"] = crop_pct
    return apply_overrides(config, overrides)


def adapt_to_resolution(model, params, res: int):
    """A model and params for inputs of `res` px: a ViT's position embedding is resized once.

    Other families take any resolution with the same parameters and are returned unchanged.
    """
    fields = model_fields(type(model))
    if "pos_embed" in params and {"image_size", "patch_size"} <= fields:
        from cnnx.models.vit import resize_pos_embed

        grid = res // model.patch_size
        return model.clone(image_size=grid * model.patch_size), resize_pos_embed(params, grid)
    return model, params


def evaluator_name(res: int, crop_pct: float | None = None) -> str:
    """The name of FixRes's evaluator at `res` px and centre-crop ratio `crop_pct` (None: the
    run's): 'test_32px', 'test_32px_crop0p875'; its metrics are '<name>/top1', ..."""
    name = f"test_{int(res)}px"
    return name if crop_pct is None else f"{name}_crop{float(crop_pct):g}".replace(".", "p")


def evaluator_config(config, res: int, crop_pct: float | None = None):
    """`config` at resolution `res` (`at_resolution`) with FixRes's evaluator entry for `res`
    and `crop_pct` added (`evaluator_name`): the run's 'eval' entry (its split, pp, options),
    at that size and crop ratio.

    Returns:
      (config, name).
    """
    cfg = at_resolution(config, res, crop_pct)
    name = evaluator_name(res, crop_pct)
    default = (config.get("evals") or {}).get(entries.DEFAULT)
    fields = {"data": {}, "options": {}} if default is None else default.to_dict()
    data = {k: v for k, v in fields["data"].items() if v is not None}
    data["image_size"] = int(res)
    if crop_pct is not None:  # else the 'eval' entry's, or the run's
        data["crop_pct"] = crop_pct
    entry = entries.evaluator(data=data, options=fields["options"], every_steps=0)
    entries.add_entries(cfg, {name: entry})
    return cfg, name


def evaluate_at(config, variables, res: int, crop_pct: float | None = None, model=None) -> dict:
    """Top-1/top-5/loss/NLL/ECE of `variables` on the eval split at `res` px, centre crop
    `crop_pct`, through FixRes's evaluator entry (`evaluator_config`).

    The same evaluation as eval.py's and the training loop's (`cnnx.evaluate.registry`):
    sums reduced on device, so every process of a multi-process run takes part and gets the
    global metrics.

    Args:
      config: the training config.
      variables: {'params', 'batch_stats'} (host or device arrays).
      res: the test resolution (px).
      crop_pct: its centre-crop ratio (None: the config's).
      model: the model to apply (default: the config's at `res`; a fine-tuned ViT's own).

    Returns:
      The evaluator's metrics: '<name>/top1', '<name>/top5', '<name>/loss', '<name>/nll',
      '<name>/ece', '<name>/examples' (in %; `name` = `evaluator_name(res, crop_pct)`).

    Raises:
      ConfigError: the config or the size does not fit the model or the data.
    """
    cfg, name = evaluator_config(config, res, crop_pct)
    exp = setup(cfg)
    model = model or exp.model
    (evaluator,) = make_evaluators(exp, [name], apply_fns=(model.apply,))
    return evaluator((jax.device_put(variables, replicated(exp.mesh)),))


def finetune_at(config, variables, res: int, ft: ml_collections.ConfigDict, crop_pct=None):
    """Fine-tunes at `res` with test-time preprocessing; BN statistics re-estimated there.

    Args:
      config: the training config of the pretrained model.
      variables: {'params', 'batch_stats'} of the pretrained model (host or device arrays).
      res: the test resolution to adapt to.
      ft: the `finetune` config section (steps, batch_size, lr, momentum, weight_decay,
        trainable, last_n_blocks, pp).
      crop_pct: centre-crop ratio of the test-time preprocessing.

    Returns:
      (model, new variables, {'finetune/loss': final loss, 'trainable_params': count}).
    """
    cfg = at_resolution(config, res, crop_pct)
    exp = setup(cfg)
    model, params = adapt_to_resolution(exp.model, variables["params"], res)
    if "drop_path_rate" in options(exp.spec):
        model = model.clone(drop_path_rate=0.0)  # frozen blocks: no stochastic depth
    mask = trainable_mask(params, ft.trainable, ft.last_n_blocks)
    labels = jax.tree.map(lambda m: "train" if m else "freeze", mask)
    leaves = zip(jax.tree.leaves(params), jax.tree.leaves(mask))
    n_train = sum(int(np.prod(np.shape(p))) for p, m in leaves if m)
    schedule = optax.cosine_decay_schedule(ft.lr, max(1, ft.steps))
    train_tx = optax.chain(
        optax.add_decayed_weights(ft.weight_decay),
        optax.sgd(schedule, momentum=ft.momentum, nesterov=True),
    )
    tx = optax.multi_transform({"train": train_tx, "freeze": optax.set_to_zero()}, labels)
    pidx, pcount = process_info()
    train_input = TrainInput(
        source=exp.source,
        split=cfg.data.train_split,
        pp=ft.pp or cfg.data.eval_pp,
        ctx=exp.pp_context(train=False, image_size=res),
        global_batch=ft.batch_size,
        seed=cfg.seed + 1,
        shuffle_buffer=cfg.data.shuffle_buffer,
        cache=cfg.data.cache,
        process_index=pidx,
        process_count=pcount,
    )
    # The trainer's own step; no auxiliary-classifier loss (only the main head is adapted).
    rep = replicated(exp.mesh)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(params),
        apply_fn=model.apply,
        tx=tx,
    )
    shardings = jax.tree.map(lambda _: rep, state)
    state = jax.device_put(state, shardings)
    step = make_train_step(
        num_classes=model.num_classes,
        schedule=schedule,
        mesh=exp.mesh,
        state_shardings=shardings,
        options=StepOptions.default(aux_loss_weight=0.0),
    )
    sharding = batch_sharding(exp.mesh)
    rng = jax.device_put(jax.random.PRNGKey(cfg.seed + 17), rep)  # folded with each step
    batches = train_input.iterate(0)
    loss = float("nan")
    for _ in range(ft.steps):
        state, metrics = step(state, to_global(next(batches), sharding), rng)
        loss = metrics["loss"]
    params, batch_stats = state.params, state.batch_stats
    return (
        model,
        {"params": params, "batch_stats": batch_stats},
        {"finetune/loss": float(loss), "trainable_params": n_train},
    )


def run_fixres(fc: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """The FixRes protocol over `fc.train_resolutions` × `fc.test_resolutions`.

    Args:
      fc: the FixRes config (configs/sweeps/fixres.py): `train` (a full training config),
        train_resolutions, test_resolutions, crop_pct, finetune section.
      workdir: `train_<R>/` training workdirs (resumed when present) and fixres.json go here.
      log: progress printer.

    Returns:
      {'before': {R_train: {R_test: top1}}, 'after': {...}, 'rows': [per-cell dicts: train_res,
      test_res, before, after, evaluator (its name), before_metrics and after_metrics
      ('<evaluator>/top1', ...), finetune/loss, trainable_params]}.
    """
    from cnnx.sweeps.sizes import accepted_size
    from cnnx.train.checkpoint import load_variables

    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    out_path = os.fspath(epath.Path(workdir) / "fixres.json")
    table = {"before": {}, "after": {}, "rows": []}
    ft_res = list(fc.finetune.resolutions or fc.test_resolutions)
    for r_train in fc.train_resolutions:
        twd = os.fspath(epath.Path(workdir) / f"train_{r_train}")
        config = at_resolution(fc.train, r_train, fc.crop_pct)
        log(f"train at {r_train} px -> {twd}")
        trained = train_and_evaluate(config, twd)
        if trained["status"] != "completed":
            raise RuntimeError(f"training at {r_train} px was interrupted; run again to resume")
        variables = load_variables(twd)
        before, after = {}, {}
        for asked in fc.test_resolutions:
            # A listed size the model would crop runs at the nearest one it takes, said so.
            r_test = accepted_size(config, asked)
            if r_test in before:
                log(f"  test {asked} px: the model takes {r_test} px, measured already")
                continue
            name = evaluator_name(r_test, fc.crop_pct)
            m = evaluate_at(config, variables, r_test, fc.crop_pct)
            before[r_test] = m[f"{name}/top1"]
            row = {"train_res": r_train, "test_res": r_test, "before": before[r_test]}
            row.update(evaluator=name, before_metrics=m)
            if r_test != asked:
                row["test_res_asked"] = asked
                log(f"  test {asked} px -> {r_test} px, the nearest size the model accepts")
            if (asked in ft_res or r_test in ft_res) and fc.finetune.steps > 0:
                model, tuned, info = finetune_at(
                    config, variables, r_test, fc.finetune, fc.crop_pct
                )
                m2 = evaluate_at(config, tuned, r_test, fc.crop_pct, model=model)
                after[r_test] = m2[f"{name}/top1"]
                row.update(after=after[r_test], after_metrics=m2, **info)
            log(
                f"  train {r_train} test {r_test}: top-1 {row['before']:.2f}"
                + (f" -> {row['after']:.2f} after fine-tuning" if "after" in row else "")
            )
            table["rows"].append(row)
            logging.info("fixres %s", row)
        table["before"][r_train] = before
        table["after"][r_train] = after
        if is_writer():  # every process computed the table; process 0 keeps it
            write_json_atomic(out_path, table)  # partial tables survive a crash
    return table


def parse_table(raw: dict) -> dict:
    """fixres.json's content as `run_fixres` returned it: the resolutions back to ints.

    Reads every form written so far: rows without 'evaluator' and the '*_metrics' (written
    before FixRes went through the evaluator registry) load with their top-1 tables as
    before.
    """
    table = dict(raw)
    for phase in ("before", "after"):
        table[phase] = {
            int(r): {int(t): float(v) for t, v in cells.items()}
            for r, cells in raw.get(phase, {}).items()
        }
    table["rows"] = list(raw.get("rows", []))
    return table


def load_table(path: str) -> dict:
    """`parse_table` of the fixres.json at `path` (local or gs://)."""
    return parse_table(json.loads(epath.Path(path).read_text()))


def format_table(table: dict) -> str:
    """Markdown: one row per (R_train, before/after), one column per R_test; best cell starred."""
    tests = sorted({r["test_res"] for r in table["rows"]})
    head = ["train res", "", *(f"test {t}" for t in tests)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r_train in sorted(table["before"], key=int):
        for phase in ("before", "after"):
            cells = table[phase].get(r_train, {})
            if not cells:
                continue
            best = max(cells.values())
            vals = [
                (f"{cells[t]:.2f}" + ("*" if cells[t] == best else "")) if t in cells else "-"
                for t in tests
            ]
            lines.append(f"| {r_train} | {phase} fine-tuning | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def plot(table: dict, path: str) -> str:
    """Top-1 against test resolution, before (dashed) and after (solid) fine-tuning, as a PNG
    at `path` (local or gs://); returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r_train in enumerate(sorted(table["before"], key=int)):
        color = f"C{i}"
        for phase, style in (("before", "--o"), ("after", "-s")):
            cells = table[phase].get(r_train, {})
            if cells:
                xs = sorted(cells, key=int)
                label = f"train {r_train}, {phase} fine-tuning"
                ys = [cells[x] for x in xs]
                ax.plot([int(x) for x in xs], ys, style, color=color, label=label)
        ax.axvline(int(r_train), color=color, alpha=0.2)
    ax.set_xlabel("test resolution (px)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("FixRes: accuracy against test resolution")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=120)
    finally:
        plt.close(fig)
    epath.Path(path).write_bytes(buffer.getvalue())
    return path
