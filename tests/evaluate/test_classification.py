"""The one evaluation path (cnnx.evaluate.classification): ensembles and test-time views
through the real input pipeline, the same numbers for the training loop and eval.py, top-5
below six classes, and progress."""

import functools
import io
import logging

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.metrics import confusion_matrix

from cnnx.data import EvalInput, PPContext, get_source, to_global
from cnnx.evaluate import progress, views  # noqa: F401
from cnnx.evaluate.classification import (
    Member,
    evaluate,
    evaluate_members,
    log_mean_probabilities,
    make_batch_sums,
)
from cnnx.evaluate.metrics import format_metrics, masked_sums, summarize, top5_note
from cnnx.parallel.mesh import batch_sharding, make_mesh
from tests.data.sections import data_section

CTX = PPContext(image_size=8, crop_pct=1.0, channels=1, mean=(0.5,), std=(0.5,))


def _constant_member(name, logits):
    def apply_fn(variables, x, train):
        return jnp.broadcast_to(variables["logits"], (x.shape[0], 10))

    return Member(name, apply_fn, {"logits": jnp.asarray(logits, jnp.float32)})


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_ensemble_averages_probabilities():
    src = get_source(data_section("digits"))
    eval_input = EvalInput(src, "test[:40]", "tencrop|normalize", CTX, 16)
    a = np.zeros(10)
    a[3] = 2.0
    b = np.zeros(10)
    b[7] = 3.0
    members = [_constant_member("a", a), _constant_member("b", b)]
    out = evaluate_members(members, eval_input, make_mesh(8))
    examples = src.dataset(
        "test[:40]", process_index=0, process_count=1, drop_remainder=False, seed=0
    )
    labels = np.array([int(e["label"]) for e in examples])
    p = (_softmax(a) + _softmax(b)) / 2
    assert out["views"] == 10 and out["eval/examples"] == 40
    np.testing.assert_allclose(out["eval/loss"], np.mean(-np.log(p[labels])), rtol=1e-5)
    assert out["eval/top1"] == 100.0 * np.mean(labels == 7)  # b dominates the average
    cm = np.array(out["confusion"])
    assert cm.sum() == 40 and cm[:, 7].sum() == 40


def test_masked_sums_match_numpy_and_sklearn():
    rng = np.random.default_rng(0)
    b, k = 64, 7
    log_probs = np.log(rng.dirichlet(np.ones(k), size=b)).astype(np.float32)
    labels = rng.integers(0, k, b)
    mask = (np.arange(b) < 50).astype(np.float32)  # the last 14 rows are padding
    sums = jax.device_get(masked_sums(jnp.asarray(log_probs), jnp.asarray(labels), mask))
    real = slice(0, 50)
    lp, y = log_probs[real], labels[real]
    ranked = np.argsort(-lp, axis=1)
    assert sums["count"] == 50
    assert sums["top1"] == np.sum(ranked[:, 0] == y)
    assert sums["top5"] == np.sum(np.any(ranked[:, :5] == y[:, None], axis=1))
    np.testing.assert_allclose(sums["loss"], -lp[np.arange(50), y].sum(), rtol=1e-5)
    cm = confusion_matrix(y, ranked[:, 0], labels=range(k))
    np.testing.assert_array_equal(sums["confusion"], cm)
    np.testing.assert_array_equal(sums["support"], cm.sum(axis=1))
    np.testing.assert_array_equal(sums["correct"], np.diag(cm))
    per_class = summarize(sums)["per_class_top1"]
    assert per_class == [100.0 * cm[i, i] / cm[i].sum() if cm[i].sum() else None for i in range(k)]


def test_batch_sums_are_replicated_scalars_not_per_example_arrays():
    """What reaches the host is a few replicated numbers, never the sharded batch."""
    mesh = make_mesh(8)
    member = _constant_member("a", np.arange(10.0))
    fn = make_batch_sums((member.apply_fn,), mesh)
    batch = {
        "image": np.zeros((16, 4, 4, 1), np.float32),
        "label": np.arange(16) % 10,
        "mask": np.ones(16, np.float32),
    }
    sums = fn((member.variables,), to_global(batch, batch_sharding(mesh)))
    assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(sums))
    assert sums["confusion"].shape == (10, 10) and sums["top1"].shape == ()
    assert int(sums["top1"]) == 1  # class 9 always predicted; label 9 once in 16


def _trained_lenet():
    """A LeNet-5 after 20 SGD steps on digits (state, experiment), in a few seconds."""
    from cnnx.train import optim, steps
    from cnnx.train.build import init_state, make_train_input
    from cnnx.train.experiment import setup
    from tests.train.tiny import tiny_config

    exp = setup(tiny_config())
    schedule = optim.make_schedule(exp.config.schedule, 0.1, 10, 20)
    state, _ = init_state(
        exp, optim.make_optimizer(exp.config.optim, schedule), jax.random.PRNGKey(0)
    )
    options = steps.StepOptions.from_config(exp.config.train)
    step = jax.jit(
        functools.partial(steps.train_step, num_classes=10, schedule=schedule, options=options)
    )
    batches = make_train_input(exp).iterate(0)
    sharding = batch_sharding(exp.mesh)
    for _ in range(20):
        state, _ = step(state, to_global(next(batches), sharding), jax.random.PRNGKey(1))
    return exp, state


def test_periodic_eval_eval_py_and_the_old_eval_step_agree():
    """The training loop's `evaluate_state`, eval.py's `evaluate_members` and the per-batch
    formula the loop used before (softmax cross entropy and top-k of the logits) give the
    same numbers: counts exactly, the loss to float32 rounding."""
    import optax

    from cnnx.train.build import evaluate_state, make_eval_fn, make_eval_input

    exp, state = _trained_lenet()
    eval_input = make_eval_input(exp)
    variables = state.eval_variables()
    periodic = evaluate_state(exp, variables, eval_input, make_eval_fn(exp, 10))
    members = [Member("run", exp.model.apply, variables)]
    standalone = evaluate_members(members, eval_input, exp.mesh)
    assert set(periodic) == {
        *("eval/loss", "eval/top1", "eval/top5", "eval/examples"),
        *("eval/nll", "eval/ece"),  # calibration (issue 28 item 3)
    }
    for key in periodic:
        assert periodic[key] == standalone[key], key

    loss = top1 = top5 = count = 0.0
    for batch in eval_input.iterate():
        logits = exp.model.apply(variables, batch["image"], train=False).astype(jnp.float32)
        labels, mask = batch["label"], batch["mask"]
        ce = optax.softmax_cross_entropy(logits, jax.nn.one_hot(labels, 10))
        ranked = np.argsort(-np.asarray(logits), axis=1, kind="stable")
        loss += float(jnp.sum(ce * mask))
        top1 += float(np.sum((ranked[:, 0] == labels) * mask))
        top5 += float(np.sum(np.any(ranked[:, :5] == labels[:, None], axis=1) * mask))
        count += float(np.sum(mask))
    assert periodic["eval/examples"] == count == 100
    assert periodic["eval/top1"] == 100.0 * top1 / count
    assert periodic["eval/top5"] == 100.0 * top5 / count
    np.testing.assert_allclose(periodic["eval/loss"], loss / count, rtol=1e-6)
    assert 10.0 < periodic["eval/top1"] < 100.0  # a model that is neither random nor perfect


def test_one_model_ranks_its_logits_not_rounded_log_probabilities():
    """Two logits 1e-8 apart round to one log-probability; the prediction is still the
    argmax of the logits, as in the loop's evaluation before the single path."""
    logits = np.full((1, 10), -10.0, np.float32)
    logits[0, 3], logits[0, 7] = 0.0, 1e-8
    log_probs = jax.nn.log_softmax(jnp.asarray(logits))
    assert log_probs[0, 3] == log_probs[0, 7]  # tied after the softmax
    member = _constant_member("a", logits[0])
    images = jnp.zeros((1, 4, 4, 1))
    lp, scores = log_mean_probabilities((member.variables,), images, (member.apply_fn,))
    sums = masked_sums(lp, jnp.asarray([7]), jnp.ones(1), scores=scores)
    assert int(sums["top1"]) == 1 and int(np.argmax(sums["confusion"][7])) == 7
    # With two views the prediction is the averaged probability's (here still a tie: first).
    lp2, scores2 = log_mean_probabilities(
        (member.variables,), jnp.zeros((1, 2, 4, 4, 1)), (member.apply_fn,)
    )
    np.testing.assert_allclose(lp2, lp, atol=1e-6)
    assert scores2 is lp2


def test_top5_is_left_out_below_six_classes_and_says_so():
    rng = np.random.default_rng(1)
    for k, reported in ((5, False), (6, True)):
        log_probs = np.log(rng.dirichlet(np.ones(k), size=20)).astype(np.float32)
        labels = rng.integers(0, k, 20)
        out = summarize(jax.device_get(masked_sums(log_probs, labels, np.ones(20))))
        assert ("eval/top5" in out) == reported and out["num_classes"] == k
        line = format_metrics(out)
        if reported:
            assert "notes" not in out and f"top-5 {out['eval/top5']:.2f}%" in line
        else:
            assert out["notes"] == [top5_note(5)] and "always 100%" in out["notes"][0]
            assert "top-5 n/a (under 6 classes)" in line
    assert top5_note(6) is None and top5_note(1000) is None


def _digits_eval(n):
    return EvalInput(get_source(data_section("digits")), f"test[:{n}]", "resize|normalize", CTX, 16)


def test_progress_is_logged_when_stderr_is_not_a_terminal(monkeypatch, caplog):
    """Not a TTY (pytest's capture): tqdm's line goes to the log, every LOG_EVERY_S."""
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    member = _constant_member("a", np.arange(10.0))
    with caplog.at_level(logging.INFO):
        evaluate_members([member], _digits_eval(40), make_mesh(8), confusion=False)
    lines = [r.getMessage() for r in caplog.records if "batches" in r.getMessage()]
    assert lines[0].startswith("eval test[:40] (40 images): 0/3 batches")
    assert any(line.startswith("eval test[:40] (40 images): 3/3 batches") for line in lines)


def test_progress_is_a_bar_on_a_terminal(monkeypatch, caplog):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(progress.sys, "stderr", terminal)
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    member = _constant_member("a", np.arange(10.0))
    with caplog.at_level(logging.INFO):
        evaluate_members([member], _digits_eval(40), make_mesh(8), confusion=False)
    shown = terminal.getvalue()
    assert "eval test[:40] (40 images):   0%|" in shown and "| 0/3 [" in shown
    assert shown.rstrip(" ").endswith("\r")  # cleared when done: the terminal keeps no bar
    assert not [r for r in caplog.records if "batches" in r.getMessage()]  # not logged too


def test_a_short_evaluation_shows_no_progress(caplog):
    member = _constant_member("a", np.arange(10.0))
    with caplog.at_level(logging.INFO):
        evaluate_members([member], _digits_eval(40), make_mesh(8), confusion=False)
    assert not [r for r in caplog.records if "batches" in r.getMessage()]


def test_stop_abandons_the_pass():
    member = _constant_member("a", np.arange(10.0))
    fn = make_batch_sums((member.apply_fn,), make_mesh(8), confusion=False)
    calls = []
    out = evaluate(
        fn, (member.variables,), _digits_eval(40), make_mesh(8), stop=lambda: calls.append(1)
    )
    assert out is not None and len(calls) == 3  # asked before each of the 3 batches
    out = evaluate(fn, (member.variables,), _digits_eval(40), make_mesh(8), stop=lambda: True)
    assert out is None
