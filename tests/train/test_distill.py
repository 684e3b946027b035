"""Knowledge distillation (issue 31, item 4): Hinton's soft term and DeiT's hard term by hand
and against torch, the teacher's logits reaching the step's loss without training it, and a
student trained end to end from a cnnx workdir's teacher."""

import functools
import json
import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnx.errors import ConfigError
from cnnx.parallel.mesh import make_mesh, replicated
from cnnx.train import distill, losses, steps
from tests.train.test_losses import SCHEDULE, _AuxNet, _batch, _state


def test_soft_term_by_hand_and_against_torch():
    s = jnp.array([[1.0, 2.0, 3.0]])
    t = jnp.array([[3.0, 1.0, 0.0]])
    T = 2.0
    p = np.exp(np.array([3.0, 1.0, 0.0]) / T)
    p /= p.sum()
    log_q = np.array([1.0, 2.0, 3.0]) / T - math.log(np.exp(np.array([1.0, 2.0, 3.0]) / T).sum())
    expected = T * T * np.sum(p * (np.log(p) - log_q))
    np.testing.assert_allclose(distill.soft_term(s, t, T), [expected], rtol=1e-6)
    np.testing.assert_allclose(distill.soft_term(t, t, T), [0.0], atol=1e-6)
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.RandomState(0)
    a, b = rng.randn(4, 10).astype(np.float32), rng.randn(4, 10).astype(np.float32)
    ref = (
        F.kl_div(
            F.log_softmax(torch.from_numpy(a) / 4.0, 1),
            F.log_softmax(torch.from_numpy(b) / 4.0, 1),
            reduction="none",
            log_target=True,
        ).sum(1)
        * 16.0
    )
    np.testing.assert_allclose(distill.soft_term(a, b, 4.0), ref.numpy(), rtol=1e-5)


def test_hard_term_is_cross_entropy_against_the_teachers_argmax():
    s = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    t = jnp.array([[0.0, 5.0, 1.0], [2.0, 0.0, 0.0]])
    want = losses.cross_entropy(s, jnp.array([1, 0]), 3)
    np.testing.assert_allclose(distill.hard_term(s, t), want, rtol=1e-6)


@pytest.mark.parametrize("kind", ["soft", "hard"])
def test_the_step_distills_from_the_teachers_logits(kind):
    teacher_state = _state()
    teacher = distill.Teacher("aux", _AuxNet().apply, {"params": teacher_state.params})
    options = steps.StepOptions.default(
        distill=kind, distill_alpha=0.7, distill_temperature=3.0, aux_loss_weight=0.0
    )
    mesh = make_mesh()
    step = steps.make_train_step(
        num_classes=10,
        schedule=SCHEDULE,
        mesh=mesh,
        state_shardings=replicated(mesh),
        options=options,
        teacher=teacher,
    )
    student = _state()
    student = student.replace(params=jax.tree.map(lambda p: p * 0.5, student.params))
    batch = _batch()
    logits, _ = student.apply_fn({"params": student.params}, batch["image"], train=True)
    t_logits = teacher.logits(teacher.variables, batch["image"])
    labels = losses.cross_entropy(logits, batch["label"], 10)
    term = (
        distill.soft_term(logits, t_logits, 3.0)
        if kind == "soft"
        else distill.hard_term(logits, t_logits)
    )
    _, metrics = step(student, batch, jax.random.PRNGKey(0))
    np.testing.assert_allclose(metrics["loss"], jnp.mean(0.3 * labels + 0.7 * term), rtol=1e-5)


def test_distillation_without_a_teacher_is_refused(tmp_path, capsys):
    mesh = make_mesh()
    make = functools.partial(
        steps.make_train_step,
        num_classes=10,
        schedule=SCHEDULE,
        mesh=mesh,
        state_shardings=replicated(mesh),
    )
    with pytest.raises(ConfigError, match="distill='soft' and a teacher go together"):
        make(options=steps.StepOptions.default(distill="soft"))
    from tests.train.tiny import tiny_config

    with pytest.raises(ConfigError, match="needs one teacher"):
        distill.load_teacher(tiny_config(**{"train.distill": "hard"}), 10, (32, 32, 1))
    # train.py says so before anything is trained or counted (the step's MACs need a teacher).
    from cnnx import cli

    assert cli.run_training(tiny_config(**{"train.distill": "hard"}), str(tmp_path)) == 2
    assert "error: --config.train.distill='hard' needs one teacher" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


KEY = jax.random.PRNGKey(0)


def test_head_classes_reads_the_class_count_from_the_variables():
    from cnnx import models

    for name, n in (("lenet5", 7), ("resnet18", 3)):
        model = models.create(name, num_classes=n)
        x = jnp.zeros((1, 32, 32, 3))
        variables = jax.eval_shape(functools.partial(model.init, train=False), KEY, x)
        assert distill.head_classes(name, variables) == n


@pytest.mark.torch
def test_a_teacher_from_torch_weights_gives_the_reference_logits(tmp_path):
    """torchvision weights (random, saved with torch.save) become a teacher whose logits are
    the torch module's; a teacher of other classes or inputs is refused before training."""
    torch = pytest.importorskip("torch")
    from cnnx import convert
    from tests.convert.pretrained_like import rel_error
    from tests.train.tiny import tiny_config

    torch.manual_seed(0)
    module = convert.reference_model("mobilenet_v3_small", num_classes=10)
    path = str(tmp_path / "teacher.pth")
    torch.save(module.state_dict(), path)
    config = tiny_config(
        **{
            "train.distill": "hard",
            "train.teacher_torch_weights": path,
            "train.teacher_model": "mobilenet_v3_small",
        }
    )
    teacher = distill.load_teacher(config, 10, (64, 64, 3))
    images = np.random.RandomState(0).randn(2, 64, 64, 3).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    got = np.asarray(teacher.logits(teacher.variables, images))
    assert got.shape == (2, 10) and rel_error(got, want) < 1e-4
    with pytest.raises(ConfigError, match=r"predicts 10 classes, the student 5"):
        distill.load_teacher(config, 5, (64, 64, 3))
    with pytest.raises(ConfigError, match=r"cannot take the student's 64x64 images with 1 chan"):
        distill.load_teacher(config, 10, (64, 64, 1))


@pytest.mark.slow  # a ResNet-8 teacher's and a LeNet-5 student's runs of 12 steps
def test_a_distillation_run_from_a_workdirs_teacher_counts_the_teachers_macs(tmp_path, caplog):
    """The teacher is rebuilt with its run's own model options (a ResNet-8 at half width:
    depth and width from its config.json); train.py's run states the step's forward MACs
    per image, student and teacher, as the analysis module counts them, and XLA's count of
    the compiled step includes the teacher's forward."""
    from cnnx import cli, models
    from cnnx.analysis.flops import total_macs
    from cnnx.analysis.trace import trace
    from cnnx.train.loop import train_and_evaluate
    from tests.train.tiny import tiny_config

    resnet8 = {"model.name": "resnet20_cifar", "model.depth": 8, "model.width_mult": 0.5}
    teacher_dir = str(tmp_path / "teacher")
    train_and_evaluate(tiny_config(**resnet8), teacher_dir)
    config = tiny_config(
        **{
            "train.distill": "soft",
            "train.distill_temperature": 4.0,
            "train.teacher_checkpoint": teacher_dir,
        }
    )
    teacher = distill.load_teacher(config, 10, (32, 32, 1))
    assert teacher.name == "resnet20_cifar"
    # A teacher of the digits' 10 classes and 1 channel, refused for other students.
    with pytest.raises(ConfigError, match=r"predicts 10 classes, the student 4"):
        distill.load_teacher(config, 4, (32, 32, 1))
    with pytest.raises(ConfigError, match=r"cannot take the student's 32x32 images with 3 chan"):
        distill.load_teacher(config, 10, (32, 32, 3))
    student_dir = tmp_path / "student"
    caplog.set_level(logging.INFO, logger="absl")
    assert cli.run_training(config, str(student_dir)) == 0
    results = json.loads((student_dir / "results.json").read_text())
    assert results["status"] == "completed" and np.isfinite(results["eval/loss"])
    shape = (1, 32, 32, 1)
    student = total_macs(trace(models.create("lenet5", num_classes=10), shape))
    module = models.create("resnet20_cifar", depth=8, width_mult=0.5, num_classes=10)
    teacher = total_macs(trace(module, shape))
    assert results["train_macs"] == {
        "student": student,
        "teacher": teacher,
        "total": student + teacher,
    }
    assert (
        f"forward MACs per training image (32 px): student lenet5 {student:,} + teacher "
        f"resnet20_cifar {teacher:,} = {student + teacher:,}"
    ) in caplog.text
    assert teacher > 5 * student  # the half-width ResNet-8 is the step's larger part
    # XLA's FLOPs of the compiled step, per chip (4 of the 32 images on each of 8): at
    # least the teacher's forward (2 FLOPs per MAC) beside the student's.
    per_chip = config.train.batch_size // jax.device_count()
    assert results["gflop_per_step_per_chip"] * 1e9 > 2 * (teacher + student) * per_chip


def test_a_teacher_trained_on_other_normalisation_is_refused(tmp_path):
    """The teacher sees the student's normalised batches: a workdir's teacher whose run used
    another mean / std is refused before its checkpoint is read, naming the overrides."""
    from tests.train.tiny import tiny_config

    teacher = tiny_config(**{"data.mean": (0.1,), "data.std": (0.3,)})
    (tmp_path / "config.json").write_text(teacher.to_json())
    config = tiny_config(**{"train.distill": "soft", "train.teacher_checkpoint": str(tmp_path)})
    like_teacher = tiny_config(
        **{"train.teacher_checkpoint": str(tmp_path), "data.mean": (0.1,), "data.std": (0.3,)}
    )
    assert distill.normalization_problem(like_teacher, "lenet5") is None
    with pytest.raises(ConfigError, match=r"mean \[0\.1\] and std \[0\.3\] \(as its run in") as e:
        distill.load_teacher(config, 10, (32, 32, 1))
    assert "--config.data.mean='(0.1,)' --config.data.std='(0.3,)'" in str(e.value)
