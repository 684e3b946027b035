"""Config fuzzing: any set of `--config.*` overrides of configs/default.py either trains or
fails with a clear message (exit 2 and one `error:` line), never a traceback.

Each example goes through train.py's own path in-process: the flag parser with the override
errors of cnnx.cli, the config validation, `cnnx.cli.run_training` (one step of LeNet-5 on
the digits at 32 px when everything is valid). Values mix good ones with bad ones of every
kind: out of range, wrong type, unknown names, strings for numbers, resolutions the model
cannot take, batches that do not split over the 8 test devices. The examples are fixed
(`derandomize`) so CI is stable; CNNX_FUZZ_EXAMPLES=500 explores more.
"""

import contextlib
import io
import os
import shutil
import tempfile

import pytest
from absl import flags
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ml_collections import config_flags

from cnnx.cli import parse_flags, run_training
from tests.jax_cache import compilation_cache  # noqa: F401

pytestmark = pytest.mark.usefixtures("compilation_cache")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "default.py")

# Always set, so valid examples take one short step and a one-batch evaluation.
BASE = {"train.num_steps": "1", "data.eval_split": "test[:64]", "eval.batch_size": "64"}

# Override values as typed on the command line: (values that should work, values that must
# fail). The failing ones come first, so hypothesis tries them most (they cost milliseconds;
# a run that trains compiles for seconds).
VALUES = {
    "seed": (["0", "7", "4294967296"], ["-1", "abc"]),
    "model.name": (["lenet5", "lenet5_full"], ["inception_v3", "zfnet", "resnet05", "", "LeNet5"]),
    "model.width_mult": (["0.5", "1.0"], ["0", "-1", "nan", "inf", "abc"]),
    "model.depth_mult": (["1.0"], ["0", "-2"]),
    "model.dropout_rate": (["0.1"], ["-0.5", "1.5"]),
    "model.dtype": (["float32", "bfloat16"], ["int8", ""]),
    "data.source": (
        ["digits", "digits:parity", "synthetic"],
        ["digits:nope", "bogus", "folder:/nonexistent", "tfds:no_such_dataset_xyz", "", "folder:"],
    ),
    "data.image_size": (["32", "36"], ["16", "1", "0", "-32", "abc", "1.5"]),
    "data.eval_image_size": (["32", "40"], ["8", "0"]),
    "data.crop_pct": (["0.875", "1.0", "2"], ["0", "-1"]),
    "data.channels": (["1"], ["3", "0", "-1"]),
    "data.num_classes": (["10", "1"], ["0", "-3"]),
    "data.train_split": (
        ["train", "train[:50%]"],
        ["bogus", "train[5:3]", "train[:10]", "train[", "", "test[:-1%]"],
    ),
    "data.eval_split": (["test[:64]", "test", "train[:7]"], ["test[1000:]", "bogus"]),
    "data.train_pp": (
        ["random_crop(padding=2)|normalize", "inception_crop|flip|normalize", "resize"],
        [
            "flip|normalize",
            "bogus_op",
            "random_crop(padding=",
            "random_crop(nope=1)",
            "random_crop(padding=-40)|normalize",
            "",
            "resize_crop(crop_pct=0)|normalize",
            "normalize|normalize",
        ],
    ),
    "data.eval_pp": (["resize|normalize", "resize_crop|normalize"], ["nope", "flip"]),
    "data.mean": (["(0.5,)"], ["(0.5, 0.5, 0.5)", "(0.5, 0.5)", "()", "abc", "(nan,)"]),
    "data.std": (["(0.5,)", "(1e-30,)"], ["(0.0,)", "(-1.0,)"]),
    "data.shuffle_buffer": (["1", "100000"], ["0", "-1"]),
    "data.on_corrupt": (["skip", "error"], ["ignore"]),
    "optim.name": (["sgd", "adamw", "rmsprop", "lamb", "lars"], ["adam", "bogus"]),
    "optim.base_lr": (["0.1", "0", "1e30"], ["-0.1", "nan", "inf"]),
    "optim.momentum": (["0.9", "0"], ["-1", "1.5"]),
    "optim.weight_decay": (["0", "1e-4"], ["-1"]),
    "optim.grad_clip_norm": (["1.0"], ["0", "-1"]),
    "optim.decay_exclude": (["bias", ""], ["(bias"]),
    "optim.eps": (["0", "1e-8"], ["-1"]),
    "schedule.name": (["cosine", "step", "exponential", "plateau", "constant"], ["linear"]),
    "schedule.warmup_epochs": (["0", "1"], ["-1", "1e9", "nan"]),
    "schedule.decay_epochs": (["(1, 2)", "()"], ["(-1,)", "abc"]),
    "schedule.decay_factor": (["0.1"], ["0", "-1"]),
    "schedule.decay_every_epochs": (["2.4"], ["0", "-1"]),
    "train.batch_size": (["8", "16"], ["12", "0", "-8", "7", "4000", "abc", "1.5"]),
    "train.num_steps": (["1", "2"], ["0", "-1"]),
    "train.num_epochs": (["0.001"], ["0", "-1"]),
    "train.label_smoothing": (["0.1"], ["-0.1", "1.0", "2"]),
    "train.ema_decay": (["0.9"], ["1.5", "-1"]),
    "train.mixup_alpha": (["0.2"], ["-1"]),
    "train.cutmix_alpha": (["1.0"], ["-1"]),
    "train.mix_prob": (["0.5"], ["2", "-1"]),
    "train.grad_accum_steps": (["1", "2", "64"], ["3", "0", "-1"]),
    "train.log_every_steps": (["1"], ["0", "-1"]),
    "train.trainable": ([], ["conv", "(", "nomatch"]),
    "train.lr_mult_pattern": (["fc"], ["("]),
    "train.on_nonfinite": (["stop", "skip"], ["bogus"]),
    "train.profile_steps": ([], ["(-1, 2)", "1,0", "abc", "(1, 2, 3)", "(0.5, 1)"]),
    "train.fast_linear_probe": ([], ["True"]),
    "init.checkpoint": ([], ["/nonexistent"]),
    "init.torch_weights": ([], ["/nonexistent.pth"]),
    "init.step": ([], ["-1"]),
    "eval.batch_size": (["8", "64"], ["0", "-8", "12", "1.5"]),
    "eval.every_steps": (["1"], ["0", "-1"]),
    "ckpt.every_steps": (["1"], ["0", "-1"]),
    "ckpt.max_to_keep": (["1"], ["0", "-1"]),
    "ckpt.asynchronous": (["False"], ["maybe"]),
    "mesh.data": (["-1", "1"], ["3", "0", "100"]),
    "optim.lerning_rate": ([], ["1"]),  # misspelled key
    "bogus.key": ([], ["1"]),
}

KEYS = sorted(VALUES)
GOOD_KEYS = sorted(k for k in VALUES if VALUES[k][0])
# Mostly any values (failing ones tried first), a quarter of the time only good ones: those
# train a step, each with its own compilation.
any_values = st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries(
        {k: st.sampled_from(VALUES[k][1] + VALUES[k][0]) for k in keys}
    )
)
good_values = st.lists(st.sampled_from(GOOD_KEYS), min_size=1, max_size=2, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.sampled_from(VALUES[k][0]) for k in keys})
)
overrides = st.one_of(any_values, any_values, any_values, good_values)


def run_cli(extra: dict[str, str]) -> tuple[int, str]:
    """train.py with `--config=configs/default.py` and the overrides, in-process.

    Returns:
      (exit status, what it printed to stdout and stderr).
    """
    argv = ["train.py", f"--config={CONFIG}"]
    argv += [f"--config.{k}={v}" for k, v in {**BASE, **extra}.items()]
    workdir = tempfile.mkdtemp(prefix="fuzz_")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            fv = flags.FlagValues()
            holder = config_flags.DEFINE_config_file(
                "config", CONFIG, flag_values=fv, lock_config=True, sys_argv=argv
            )
            try:
                parse_flags(argv, fv)
            except SystemExit as e:
                return int(e.code), out.getvalue()
            return run_training(holder.value, workdir), out.getvalue()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def check(extra: dict[str, str]) -> int:
    status, printed = run_cli(extra)
    assert "Traceback" not in printed, printed[-3000:]
    if status == 0:
        assert "eval top-1" in printed, printed[-3000:]
    else:
        assert status == 2, (status, printed[-3000:])
        line = next(x for x in printed.splitlines() if x.startswith("error: "))
        assert len(line) > len("error: ") + 10, line
    return status


@settings(
    max_examples=int(os.environ.get("CNNX_FUZZ_EXAMPLES", "25")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(overrides)
def test_overrides_run_or_fail_clearly(extra):
    event("trained" if check(extra) == 0 else "clear error")  # --hypothesis-show-statistics


# What the fuzzer found, kept as regressions. Before the fixes these ended in a traceback
# (what was raised, and where) or ran and did something else than asked.
FOUND = {
    # Found with the validation of cnnx/config_schema.py in place (fixed in the data pipeline,
    # experiment.setup and the step-count check):
    "channels_unlike_the_arrays": {"data.channels": "3"},  # flax ScopeParamShapeError, 1st step
    "empty_eval_split": {"data.eval_split": "test[1000:]"},  # IndexError in ArraySource
    "train_pp_without_resize": {"data.train_pp": "flip|normalize"},  # ValueError in the model
    "empty_train_pp": {"data.train_pp": ""},  # the same, once compilation had started
    "negative_padding": {"data.train_pp": "random_crop(padding=-40)|normalize"},  # TF ValueError
    "zero_crop_ratio": {"data.train_pp": "resize_crop(crop_pct=0)|normalize"},  # ZeroDivision
    "uint8_eval_images": {"data.eval_pp": "flip"},  # TypeError padding the eval set
    "warmup_beyond_int32": {"schedule.warmup_epochs": "1e9"},  # OverflowError in the step
    # Found with that validation switched off (the reason it exists):
    "negative_seed": {"seed": "-1"},  # ValueError from np.random.SeedSequence
    "nan_width": {"model.width_mult": "nan"},  # OverflowError in round_filters
    "zero_shuffle_buffer": {"data.shuffle_buffer": "0"},  # tf.data InvalidArgumentError
    "bad_regex": {"optim.decay_exclude": "(bias"},  # re.error inside optax
    "nan_warmup": {"schedule.warmup_epochs": "nan"},  # ValueError: cannot round NaN
    "zero_batch": {"train.batch_size": "0"},  # ZeroDivisionError
    "grad_accum_not_dividing": {"train.grad_accum_steps": "3"},  # ValueError while tracing
    "log_every_zero": {"train.log_every_steps": "0"},  # ZeroDivisionError after the 1st step
    "negative_max_to_keep": {"ckpt.max_to_keep": "-1"},  # orbax ValueError
    "num_steps_zero": {"train.num_steps": "0"},  # ran all 30 epochs instead
    "negative_num_steps": {"train.num_steps": "-1"},  # "completed" without a single step
    "negative_width": {"model.width_mult": "-1"},  # trained a LeNet-5 one channel wide
}


@pytest.mark.parametrize("case", list(FOUND))
def test_found_by_fuzzing(case):
    check(FOUND[case])
