"""FixRes: which parameters fine-tuning touches, ViT position embeddings, the table, a real step."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnx import models
from cnnx.sweeps import fixres
from cnnx.sweeps.spec import load_config

FIXRES_FILE = "configs/sweeps/fixres.py"


def _abstract_params(name, res=16, **kw):
    m = models.create(name, num_classes=10, **kw)
    return jax.eval_shape(
        lambda: m.init(jax.random.PRNGKey(0), jnp.zeros((1, res, res, 1)), train=False)
    )["params"]


def _flat(mask):
    return {fixres._path(k): v for k, v in jax.tree_util.tree_flatten_with_path(mask)[0]}


def test_default_mask_is_classifier_and_norms():
    params = _abstract_params("resnet20_cifar")
    flat = _flat(fixres.trainable_mask(params))
    sizes = {p: int(np.prod(x.shape)) for p, x in _flat(params).items()}
    assert flat["head/fc/kernel"] and flat["stem/bn/scale"]
    assert flat["stage2_block1/conv1/bn/bias"]
    assert not flat["stem/conv/kernel"] and not flat["stage3_block2/conv2/conv/kernel"]
    assert sum(n for p, n in sizes.items() if flat[p]) < 0.05 * sum(sizes.values())


def test_last_n_blocks_and_regex():
    params = _abstract_params("resnet20_cifar")
    flat = _flat(fixres.trainable_mask(params, r"^head/", last_n_blocks=2))
    on = {p.split("/")[0] for p, v in flat.items() if v}
    assert on == {"head", "stage3_block1", "stage3_block2"}
    order = {"stem": 0, "stage10_block0": 0, "stage2_block0": 0, "stage2_block1": 0, "head": 0}
    assert fixres.last_blocks(order, 2) == ["stage2_block1", "stage10_block0"]
    assert fixres.last_blocks(order, 0) == []


def test_vit_position_embedding_is_interpolated():
    model = models.create("vit_ti_16", num_classes=10)
    grid = model.image_size // model.patch_size
    params = {"pos_embed": jnp.ones((1, 1 + grid * grid, 8)), "head": {"b": jnp.zeros(3)}}
    new_model, new = fixres.adapt_to_resolution(model, params, 48)
    assert new_model.image_size == 48 and new["pos_embed"].shape == (1, 1 + 9, 8)
    assert new["head"] is params["head"]
    other = models.create("resnet20_cifar")
    assert fixres.adapt_to_resolution(other, {"a": 1}, 48) == (other, {"a": 1})


def test_table_and_plot(tmp_path):
    table = {
        "before": {24: {16: 50.0, 24: 80.0, 32: 85.0}},
        "after": {24: {16: 70.0, 24: 86.0, 32: 90.0}},
        "rows": [{"test_res": r} for r in (16, 24, 32)],
    }
    text = fixres.format_table(table)
    assert "| 24 | before fine-tuning | 50.00 | 80.00 | 85.00* |" in text
    assert "90.00*" in text
    png = fixres.plot(table, os.path.join(tmp_path, "f.png"))
    assert os.path.getsize(png) > 1000


def test_config_file():
    c = load_config(f"{FIXRES_FILE}:digits")
    assert c.train.model.name == "resnet20_cifar" and "inception_crop" in c.train.data.train_pp
    assert min(c.test_resolutions) < min(c.train_resolutions) < max(c.test_resolutions)
    assert load_config(f"{FIXRES_FILE}:imagenet").train.model.name == "resnet50"
    assert load_config(f"{FIXRES_FILE}:digits,model=mobilenet_v2").train.model.name == (
        "mobilenet_v2"
    )


@pytest.mark.slow
def test_finetune_updates_only_trainable_and_re_estimates_bn():
    c = load_config(f"{FIXRES_FILE}:digits")
    c.train.mesh.data = 1
    c.finetune.steps = 3
    c.finetune.batch_size = 32
    config = fixres.at_resolution(c.train, 16)
    from cnnx.train.experiment import setup

    exp = setup(config)
    variables = exp.model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 1)), train=False)
    variables = jax.device_get(variables)
    _, tuned, info = fixres.finetune_at(config, variables, 20, c.finetune, 0.875)
    old, new = variables["params"], jax.device_get(tuned["params"])
    mask = _flat(fixres.trainable_mask(old))
    changed = {
        p: not np.allclose(a, b) for (p, a), b in zip(_flat(old).items(), jax.tree.leaves(new))
    }
    assert changed["head/fc/kernel"] and info["trainable_params"] > 0
    assert not any(changed[p] for p, m in mask.items() if not m)  # frozen stays frozen
    stats_old = jax.tree.leaves(variables["batch_stats"])
    stats_new = jax.tree.leaves(jax.device_get(tuned["batch_stats"]))
    assert all(not np.allclose(a, b) for a, b in zip(stats_old, stats_new))


@pytest.mark.slow
def test_readme_fixres_command_smoke(tmp_path):
    # The README's `scripts/fixres.py --config=configs/sweeps/fixres.py:digits` (one-channel
    # digits through inception_crop), shortened: it used to stop at once with rc 2, blaming an
    # inception_crop that was already in the pipeline (issue 16.11).
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = [
        f"--config={FIXRES_FILE}:digits",
        f"--workdir={tmp_path}",
        "--config.train.train.num_steps=4",
        "--config.finetune.steps=2",
        "--config.test_resolutions=(20,24)",
    ]
    p = subprocess.run(
        [sys.executable, "scripts/fixres.py", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "| 24 | after fine-tuning |" in p.stdout
    for name in ("fixres.json", "fixres.md", "fixres.png"):
        assert os.path.getsize(tmp_path / name) > 0


def test_each_test_size_is_an_evaluator_entry_of_its_own():
    from tests.train.tiny import tiny_config

    assert fixres.evaluator_name(32) == "test_32px"
    assert fixres.evaluator_name(40, 0.875) == "test_40px_crop0p875"
    config = tiny_config()
    config.evals.eval = fixres.entries.evaluator(data={"split": "test[:40]"})
    cfg, name = fixres.evaluator_config(config, 36, 1.0)
    (entry,) = fixres.entries.resolve(cfg, [name])
    assert (entry.name, entry.image_size, entry.crop_pct, entry.split) == (
        "test_36px_crop1",
        36,
        1.0,
        "test[:40]",  # the run's 'eval' entry, at FixRes's size and crop
    )
    assert cfg.data.image_size == cfg.data.eval_image_size == 36 and "test_36px_crop1" not in (
        config.evals
    )


def test_the_registry_evaluation_equals_the_direct_one():
    """FixRes's evaluator gives, to the bit, what it gave when it called the classification
    evaluation directly (its tables keep their values)."""
    from cnnx.evaluate.classification import Member, evaluate_members
    from cnnx.train.build import make_eval_input
    from cnnx.train.experiment import setup
    from tests.train.tiny import tiny_config

    config = tiny_config(**{"data.eval_split": "test[:40]", "eval.batch_size": 40})
    config.mesh.data = 1
    exp = setup(fixres.at_resolution(config, 36, 0.875))
    variables = exp.model.init(jax.random.PRNGKey(0), jnp.zeros((1, 36, 36, 1)), train=False)
    got = fixres.evaluate_at(config, variables, 36, 0.875, model=exp.model)  # compiles once
    member = Member("m", exp.model.apply, variables)
    direct = evaluate_members([member], make_eval_input(exp, image_size=36), exp.mesh)
    name = "test_36px_crop0p875"
    metrics = ("ece", "examples", "loss", "nll", "top1", "top5")
    assert sorted(got) == [f"{name}/{k}" for k in metrics]
    for metric in metrics:
        assert got[f"{name}/{metric}"] == direct[f"eval/{metric}"], metric


# fixres.json as written before FixRes went through the evaluator registry (rows without
# 'evaluator' and '*_metrics').
OLD_FIXRES_JSON = {
    "before": {"24": {"16": 50.0, "24": 80.0, "32": 85.0}},
    "after": {"24": {"16": 70.0, "32": 90.0}},
    "rows": [
        {"train_res": 24, "test_res": 16, "before": 50.0, "after": 70.0, "finetune/loss": 0.5},
        {"train_res": 24, "test_res": 24, "before": 80.0},
        {"train_res": 24, "test_res": 32, "before": 85.0, "after": 90.0, "finetune/loss": 0.4},
    ],
}


def test_a_table_written_in_the_old_form_still_loads(tmp_path):
    import json

    from cnnx.findings import fixres as finding
    from cnnx.findings.runs import Run

    path = tmp_path / "fixres.json"
    path.write_text(json.dumps(OLD_FIXRES_JSON))
    table = fixres.load_table(str(path))
    assert table["before"] == {24: {16: 50.0, 24: 80.0, 32: 85.0}}
    assert table["after"] == {24: {16: 70.0, 32: 90.0}} and len(table["rows"]) == 3
    text = fixres.format_table(table)
    assert "| 24 | before fine-tuning | 50.00 | 80.00 | 85.00* |" in text
    assert "| 24 | after fine-tuning | 70.00 | - | 90.00* |" in text

    class Record:  # what cnnx.findings.runs gives the finding: fixres.json as results
        results = json.loads(path.read_text())
        run = Run(name="fixres_s0", config="c.py", kind="fixres", label="FixRes", seed=0)

    values = finding.FixRes().measure({"fixres_s0": Record()}, None).values["fixres_s0"]
    assert values["before@32"] == 85.0 and values["after@16"] == 70.0 and values["train_res"] == 24
