"""Evaluate checkpoints of workdirs: any split, resolution, crop ratio, test-time views, and
ensembles of several runs (probabilities averaged)."""

import hashlib
import json
import os
import sys

import jax
import ml_collections
import numpy as np
from etils import epath

from cnnx.errors import CheckpointError, CnnxError, ConfigError, WorkdirError
from cnnx.evaluate import entries
from cnnx.evaluate.classification import Member
from cnnx.evaluate.metrics import format_metrics
from cnnx.evaluate.named_sets import with_named_sets
from cnnx.parallel.mesh import replicated
from cnnx.process_defaults import import_tensorflow
from cnnx.train import distributed, optim
from cnnx.train import workdir as wd
from cnnx.train.build import init_state, make_evaluators, make_tx
from cnnx.train.checkpoint import Checkpointer
from cnnx.train.experiment import setup


def _fit_mesh(config) -> None:
    """Adapts a run's mesh, in place, to the devices here (checkpoints restore onto any mesh)."""
    from absl import logging

    from cnnx.parallel.mesh import mesh_shape

    m = config.mesh
    try:
        mesh_shape(jax.device_count(), m.data, m.fsdp, m.model)
        return
    except ConfigError:
        pass
    old = (m.data, m.fsdp, m.model)
    m.data = -1
    if jax.device_count() % (m.fsdp * m.model):
        m.fsdp, m.model = 1, 1
    logging.info(
        "The run's mesh data,fsdp,model=%s does not fit the %d devices here; using %s.",
        old,
        jax.device_count(),
        (m.data, m.fsdp, m.model),
    )


def _require_ema(workdir: str, config) -> None:
    if config.train.ema_decay is None:
        raise ConfigError(
            f"--ema: the run in {workdir} kept no EMA weights (its config has no "
            "train.ema_decay); evaluate it without --ema."
        )


def restore_state(config, workdir: str, step: int | None = None):
    """Builds the experiment from `config` and restores its train state from `workdir`."""
    wd.check_folder(workdir)
    exp = setup(config)  # the config's own faults first: they say more than a missing step
    ckpt = Checkpointer(wd.checkpoints_dir(workdir), asynchronous=False, read_only=True)
    if ckpt.latest_step() is None:
        ckpt.close()
        raise CheckpointError(
            f"No checkpoint in {ckpt.directory}; train first (python train.py --workdir="
            f"{workdir}) or point --workdir at a run."
        )
    # The optimizer only shapes the template; its values come from the checkpoint.
    schedule = optim.make_schedule(config.schedule, 0.0, 1, 1)
    template, _ = init_state(exp, make_tx(config, schedule), jax.random.PRNGKey(0))
    try:
        state = ckpt.restore(template, step)
    finally:
        ckpt.close()
    return exp, state


def view_pp(views: str | None, eval_pp: str) -> str:
    """The eval pp string with its resize/crop op replaced by a view op (`tencrop`, ...).

    The view ops are tf.data ops: asking for views imports TensorFlow and registers them
    (`cnnx.evaluate.views`); an evaluation without views needs neither.
    """
    if not views:
        return eval_pp
    import_tensorflow(f"--views={views}")
    from cnnx.evaluate import views as views_lib  # registers the view ops

    if views.split("(")[0].strip() not in views_lib.VIEW_OPS:
        raise ConfigError(f"Unknown --views={views!r}; use one of {sorted(views_lib.VIEW_OPS)}.")
    ops = [p.strip() for p in eval_pp.split("|")]
    kept = [p for p in ops if p.split("(")[0] not in ("resize_crop", "resize", "decode")]
    return "|".join([views, *kept])


def evaluate_checkpoint(
    config,
    workdir: str,
    *,
    step: int | None = None,
    split: str | None = None,
    image_size: int | None = None,
    crop_pct: float | None = None,
    use_ema: bool = False,
    views: str | None = None,
    ensemble: tuple[str, ...] = (),
    evals: tuple[str, ...] = (),
    evaluators=None,
) -> dict:
    """Top-1 / top-5 / loss / ECE (and per-class accuracy, confusion) of a checkpoint on a
    split, or on the config's named evaluators.

    Args:
      config: the training config (e.g. `workdir.load_config(workdir)`); its mesh is fitted
        to the devices here.
      workdir: the run's directory.
      step: checkpoint step (default: the newest).
      split: dataset split (default: config.data.eval_split).
      image_size: evaluation resolution (default: the config's).
      crop_pct: centre-crop ratio (default: the config's / model's).
      use_ema: evaluate the EMA weights (when the run kept them).
      views: test-time views: None (the config's eval preprocessing), 'center', 'tencrop',
        'multiscale' or 'googlenet'.
      ensemble: further workdirs (newest checkpoints, their own configs) whose probabilities
        are averaged with this one's; they must predict the same classes.
      evals: names of the evaluators to run: the config's (`config.evals`, 'eval' the run's
        eval split), `evaluators`' or the named test sets
        (`cnnx.evaluate.named_sets.IMAGENET_TEST_SETS`, added when the config lacks them);
        empty: `evaluators`' entries, else 'eval' alone. `split` changes the 'eval'
        evaluator's split; `image_size`, `crop_pct` and `views` apply to every one.
      evaluators: more evaluator entries ({name: `cnnx.evaluate.entries.evaluator(...)`},
        eval.py's --evaluators=FILE), added to the config's (replacing a same-named one).

    Returns:
      Each evaluator's '<name>/top1', '<name>/top5', '<name>/loss', '<name>/nll',
      '<name>/ece', '<name>/examples'; 'evals' (their names), 'arrays' ({'<name>/confusion',
      '<name>/per_class_top1': arrays}), the first evaluator's 'confusion' and
      'per_class_top1' (lists), and what was evaluated (step, split, image_size, crop_pct,
      model, ema, pp, views, members, num_classes).

    Raises:
      ConfigError: a bad entry, or a name that is neither the config's, `evaluators`' nor a
        named test set (naming those that are).
    """
    config = ml_collections.ConfigDict(config.to_dict())
    if evaluators:
        entries.add_entries(config, evaluators)
    names = list(evals) or list(evaluators or ()) or [entries.DEFAULT]
    config = with_named_sets(config, names)
    if crop_pct is not None:
        config.data.crop_pct = crop_pct
    others = [(other, wd.load_config(other)) for other in ensemble]
    for run_config in [config] + [c for _, c in others]:
        _fit_mesh(run_config)
    if use_ema:  # before anything is restored: a run without EMA weights has nothing to give
        for run, run_config in [(workdir, config), *others]:
            _require_ema(run, run_config)
    exp, state = restore_state(config, workdir, step)
    members = [Member(workdir, exp.model.apply, state.eval_variables(ema=use_ema))]
    for other, other_config in others:
        other_exp, other_state = restore_state(other_config, other)
        if other_exp.model.num_classes != exp.model.num_classes:
            raise ConfigError(
                f"Ensemble member {other} predicts {other_exp.model.num_classes} classes, "
                f"{workdir} predicts {exp.model.num_classes}."
            )
        members.append(Member(other, other_exp.model.apply, other_state.eval_variables(use_ema)))
    if crop_pct is not None:  # the flag wins over the entries' own crop ratios
        for entry in (config.get("evals") or {}).values():
            entry.data.crop_pct = None
    built = make_evaluators(
        exp,
        names,
        apply_fns=tuple(m.apply_fn for m in members),
        confusion=True,
        split=split,
        image_size=image_size,
        pp=lambda pp: view_pp(views, pp),
    )
    variables = tuple(jax.device_put(m.variables, replicated(exp.mesh)) for m in members)
    results, arrays = {}, {}
    for ev in built:
        results.update(ev(variables))
        arrays.update({f"{ev.name}/{k}": v for k, v in ev.arrays.items()})
    first = built[0]
    results.update(
        {
            "evals": [ev.name for ev in built],
            "arrays": arrays,
            "confusion": first.arrays.get("confusion", np.zeros((0, 0))).tolist(),
            "per_class_top1": [  # NaN: a class without examples
                None if np.isnan(v) else float(v) for v in first.arrays.get("per_class_top1", [])
            ],
            "num_classes": first.num_classes,
            "views": first.views,
            "members": [m.name for m in members],
            "step": int(jax.device_get(state.step)),
            "split": first.eval_input.split,
            "image_size": first.eval_input.ctx.image_size,
            "crop_pct": first.eval_input.ctx.crop_pct,
            "model": exp.spec.name,
            "ema": use_ema,
            "pp": first.eval_input.pp,
        }
    )
    return results


def output_name(results: dict, *, explicit: dict) -> str:
    """The default JSON name of an evaluation: one name per distinct evaluation, so no
    evaluation replaces another's file.

    Args:
      results: what `evaluate_checkpoint` returned (split, image size, step, ...).
      explicit: the options the user set (crop_pct, use_ema, views, ensemble, config); each
        set one adds its value (or, for lists and configs, a short digest) to the name.

    Returns:
      e.g. `eval_test_32_step660.json`, `eval_test_32_step660_crop1.0_ema_tencrop.json`.
    """

    def digest(value) -> str:
        return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]

    parts = [f"eval_{results['split']}_{results['image_size']}_step{results['step']}"]
    if explicit.get("crop_pct") is not None:
        parts.append(f"crop{explicit['crop_pct']}")
    if explicit.get("use_ema"):
        parts.append("ema")
    if explicit.get("views"):
        parts.append("".join(explicit["views"].split()))
    if explicit.get("ensemble"):
        # A path string, not a file operation: local folders by absolute path, gs:// as given.
        members = [w if wd.is_remote(w) else os.path.abspath(w) for w in explicit["ensemble"]]
        parts.append(f"ensemble{len(members) + 1}-{digest(members)}")
    if explicit.get("config") is not None:
        parts.append(f"config-{digest(explicit['config'].to_dict())}")
    if explicit.get("evals"):
        parts.append("evals-" + "-".join(explicit["evals"]))
    if explicit.get("evaluators"):
        entries_dict = ml_collections.ConfigDict(dict(explicit["evaluators"])).to_dict()
        parts.append(f"evaluators-{digest(entries_dict)}")
    return "_".join(parts).replace("/", "_").replace(os.sep, "_") + ".json"


def run(
    workdir: str,
    config=None,
    *,
    output: str | None = None,
    confusion_png: str | None = None,
    **options,
) -> int:
    """eval.py after its flags: checks the paths, evaluates, prints, then writes.

    The metrics are printed before anything is written, so a write that fails (read-only
    workdir, full disk) loses nothing; output folders are checked (and made) before the
    evaluation starts, so a bad path costs no evaluation.

    Args:
      workdir: the run's directory.
      config: a config to use instead of the workdir's config.json.
      output: where the JSON goes (default: `<workdir>/<output_name>`).
      confusion_png: where a confusion-matrix PNG goes (none by default).
      **options: `evaluate_checkpoint`'s keyword arguments.

    Returns:
      0, or 2 after printing one `error:` line.
    """
    try:
        wd.check_folder(workdir)
        if output:
            folder = os.fspath(epath.Path(output).parent)
            wd.check_folder(folder, create=True, flag="the folder of --output")
        elif not wd.is_remote(workdir) and epath.Path(workdir).is_dir():  # missing: below
            try:
                wd.check_folder(workdir, create=True)
            except WorkdirError as e:
                raise WorkdirError(f"{e} Or pass --output=PATH to write elsewhere.") from None
        if confusion_png:
            folder = os.fspath(epath.Path(confusion_png).parent)
            wd.check_folder(folder, create=True, flag="the folder of --confusion_png")
        used = config if config is not None else wd.load_config(workdir)
        results = evaluate_checkpoint(used, workdir, **options)
    except CnnxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not distributed.is_writer():  # every process evaluated; process 0 reports
        return 0
    explicit = {**options, "config": config}
    out = output or os.fspath(epath.Path(workdir) / output_name(results, explicit=explicit))
    print(
        f"{results['model']} step {results['step']} on {results['split']} at "
        f"{results['image_size']} px, {results['views']} view(s), "
        f"{len(results['members'])} model(s){' (EMA weights)' if results['ema'] else ''}: "
        + (
            format_metrics(results)
            if results["evals"] == ["eval"]
            else "; ".join(f"{name}: {format_metrics(results, name)}" for name in results["evals"])
        ),
        flush=True,
    )
    try:
        write_json(results, out)
        if confusion_png:
            from cnnx.evaluate.plots import plot_title, save_confusion_png

            save_confusion_png(results["confusion"], confusion_png, title=plot_title(results))
    except OSError as e:
        print(
            f"error: writing the results to {e.filename or out} failed ({e.strerror or e}); "
            "the metrics are printed above. Pass --output=PATH to write them elsewhere.",
            file=sys.stderr,
        )
        return 2
    print(f"-> {out}")
    return 0


def write_json(results: dict, path: str) -> None:
    """Writes the figures of `results` to `path` and its arrays (confusion matrices, per-class
    top-1) beside it, `<path>.npz` for `<path>.json` (`numpy.load`), each whole or not at all:
    a 1000-class confusion matrix printed in JSON was most of a 9 MB file (issue 30)."""
    arrays = results.get("arrays") or {}
    figures = {
        k: v for k, v in results.items() if k not in ("arrays", "confusion", "per_class_top1")
    }
    if arrays:
        npz = wd.arrays_path(path)
        wd.write_npz_atomic(npz, arrays)
        figures["arrays_file"] = os.path.basename(npz)
    wd.write_json_atomic(path, figures)
