"""Every command in the README's ```bash blocks is checked (issue 16, item 11).

Each command gets the checks every command gets, in process and cheap:

* its program exists: `python X.py` / `.venv/bin/python X.py`, `scripts/*.sh` (executable),
  `make <target>` (a Makefile target);
* its flags exist and parse: an absl entry point (train.py, eval.py, scripts/fixres.py) knows
  every `--flag`, is given every required one, and its `--config=path[:arg]` loads with the
  `--config.*` overrides applied and passes the schema check; a scripts/ tool parses the
  arguments with its own absl flags (`FLAGS`, through `cnnx.script_flags.parse`).

and then, from the table below, one of:

* `RUN`: the smoke form runs for real (synthetic or bundled data, tiny models, a temp dir);
* `PARSE`: the checks above only, where a run needs data, hardware or hours we lack (why);
* `DRY_RUN`: a shell script with DRY_RUN=1, which prints the commands it would run;
* `OUTSIDE`: another program's command (srun, mpirun, tensorboard): the cnnx command inside
  it is checked as above.

The table is keyed by the README's text (comments dropped, continuation lines joined), so a
README command the table does not cover fails `test_every_readme_command_is_covered`, and a
table row whose command left the README fails it too. When a command changes, change its
row. `{tmp}` is a fresh temporary directory, `{lenet5}` a workdir trained by the smoke run of
the README's first training command.
"""

import ast
import dataclasses
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ABSL_SCRIPTS = {"train.py", "eval.py", "scripts/fixres.py", "scripts/sweep.py"}
TPU_ENV = {
    "TPU_NAME": "cnnx",
    "ZONE": "us-east5-b",
    "ACCELERATOR_TYPE": "v6e-16",
    "PROJECT": "your-project",
}


@dataclasses.dataclass(frozen=True)
class Check:
    """How one README command is checked.

    Attributes:
      how: RUN, PARSE, DRY_RUN or OUTSIDE (see the module docstring).
      argv: the form that is checked / run (default: the README's own words); `...` and
        placeholders such as DIR replaced by real values.
      why: for PARSE and OUTSIDE, why it is not run here.
      slow: the run takes more than ~20 s.
    """

    how: str
    argv: str | None = None
    why: str = ""
    slow: bool = False


RUN, PARSE, DRY_RUN, OUTSIDE = "run", "parse", "dry_run", "outside"
IMAGENET = "needs ImageNet (TFDS manual download) and hours of accelerator time"
TPU = TPU_ENV

COMMANDS: dict[str, Check] = {
    # Quick start
    "make demo": Check(PARSE, why="creates a venv and installs (network); `make -n` checks it"),
    "make test": Check(PARSE, why="the whole suite; `make -n` checks the target"),
    "python scripts/make_color_digits.py --output=/tmp/color_digits": Check(
        RUN,
        "python scripts/make_color_digits.py --output={tmp}/color_digits --num_train=20 "
        "--num_test=10",
    ),
    "python train.py --config=configs/default.py --config.data.source=folder:/tmp/color_digits "
    "--workdir=workdirs/color_digits": Check(
        PARSE,
        why="30 epochs on 1,400 images (minutes); tests/train/test_health.py trains a smaller "
        "version (test_default_recipe_learns_coloured_digits)",
    ),
    # Training and evaluation
    "python train.py --config=configs/default.py --workdir=workdirs/lenet5": Check(
        RUN, "python train.py --config=configs/default.py:smoke --workdir={lenet5}", slow=True
    ),
    "python train.py --config=configs/resnet.py:50 --config.train.batch_size=1024 "
    "--workdir=workdirs/r50": Check(PARSE, why=IMAGENET),
    "python train.py --config=configs/resnet_cifar.py:56,digits --workdir=workdirs/r56": Check(
        PARSE, why="ResNet-56 for 30 epochs, about an hour; resnet_cifar.py:20,smoke runs in tests"
    ),
    "python eval.py --workdir=workdirs/lenet5 --split=test --image_size=32 --crop_pct=1.0": Check(
        RUN,
        "python eval.py --workdir={lenet5} --split=test --image_size=32 --crop_pct=1.0",
        slow=True,
    ),
    # Recipes, transfer learning, sweeps
    "python train.py --config=configs/efficientnet.py:b0 --workdir=workdirs/b0": Check(
        PARSE, why=IMAGENET
    ),
    "python train.py --config=configs/convnext.py:tiny --workdir=workdirs/convnext_t": Check(
        PARSE, why=IMAGENET
    ),
    "python train.py --config=configs/resnet.py:50,paper --workdir=workdirs/r50_paper": Check(
        PARSE, why=IMAGENET
    ),
    "python train.py --config=configs/resnet.py:50,tv2 --workdir=workdirs/r50_tv2": Check(
        PARSE, why=IMAGENET + "; tests/test_configs.py smoke-runs :50,tv2,smoke"
    ),
    "python train.py --config=configs/resnet.py:50,rsb_a1 --workdir=workdirs/r50_a1": Check(
        PARSE, why=IMAGENET + "; tests/test_configs.py smoke-runs :50,rsb_a1,smoke"
    ),
    "python train.py --config=configs/convnext.py:tiny "
    "--config.init.torch_weights=convnext_tiny.pth --config.init.reset_head=True "
    "--config.optim.layer_decay=0.75 --workdir=workdirs/cnx_ft": Check(
        PARSE,
        why="needs ImageNet and the user's weights file; tests/train/test_layer_decay.py trains "
        "with layer decay",
    ),
    "python train.py --config=configs/default.py --config.train.distill=soft "
    "--config.train.distill_alpha=0.9 --config.train.distill_temperature=4 "
    "--config.train.teacher_checkpoint=workdirs/r56 --workdir=workdirs/lenet5_kd": Check(
        PARSE,
        why="needs the ResNet-56 teacher above (20-30 minutes); tests/train/test_distill*.py "
        "train students of ResNet-8 teachers",
    ),
    "python eval.py --workdir=DIR --views=tencrop --ensemble=DIR2 --confusion_png=cm.png": Check(
        RUN,
        "python eval.py --workdir={lenet5} --views=tencrop --ensemble={lenet5} "
        "--confusion_png={tmp}/cm.png",
        slow=True,
    ),
    "python scripts/convert_weights.py --model=resnet50 --torch_weights=resnet50.pth "
    "--workdir=workdirs/r50_tv": Check(
        PARSE, why="needs the user's weights file; tests/scripts/test_convert_weights.py runs it"
    ),
    "python eval.py --workdir=workdirs/r50_tv --config=configs/resnet.py:50 "
    "--config.data.source=tfds:imagenet_v2 --config.data.download=True --split=test": Check(
        PARSE,
        why="downloads ImageNetV2 (1.2 GB) and needs converted ResNet-50 weights; "
        "tests/scripts/test_convert_weights.py checks a conversion's logits against torch",
    ),
    "python train.py --config=configs/finetune_flowers102.py "
    "--config.init.torch_weights=resnet50.pth --workdir=workdirs/flowers": Check(
        PARSE, why="needs Flowers-102 from TFDS and a weights file"
    ),
    "python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py "
    "--workdir=workdirs/grid": Check(
        RUN,
        "python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py "
        "--workdir={tmp}/grid --dry_run",
        slow=True,
    ),
    "python scripts/sweep.py "
    "--sweep=configs/sweeps/efficientnet_grid.py:resnet20_cifar,digits,steps=80 "
    "--workdir=workdirs/digits_grid": Check(
        RUN,
        "python scripts/sweep.py "
        "--sweep=configs/sweeps/efficientnet_grid.py:resnet20_cifar,digits,steps=80 "
        "--workdir={tmp}/digits_grid --dry_run",
        slow=True,
    ),
    "python scripts/fixres.py --config=configs/sweeps/fixres.py:digits "
    "--workdir=workdirs/fixres": Check(
        PARSE, why="trains several digits models (minutes); tests/sweeps/test_fixres.py runs it"
    ),
    # Weights out
    "python scripts/export_weights.py --workdir=workdirs/lenet5 --to=safetensors "
    "--output=lenet5.safetensors": Check(
        RUN,
        "python scripts/export_weights.py --workdir={lenet5} --to=safetensors "
        "--output={tmp}/lenet5.safetensors",
        slow=True,
    ),
    "python scripts/export_weights.py --workdir=workdirs/r50 --to=torch --output=r50.pth "
    "--ema": Check(
        PARSE,
        why="needs a trained ResNet-50 workdir; tests/export/test_weights.py exports a "
        "ResNet-18 one and loads it into torchvision",
    ),
    "python scripts/export_serving.py --workdir=workdirs/lenet5 --output=lenet5.jax": Check(
        RUN,
        "python scripts/export_serving.py --workdir={lenet5} --output={tmp}/lenet5.jax",
        slow=True,
    ),
    "python scripts/findings.py --all --scale=small --workdir=workdirs/findings --report "
    "--output=docs/findings.md": Check(
        PARSE,
        why="about 70 runs, an hour on a quiet 2-core CPU; tests/findings runs each finding's "
        "smoke form",
    ),
    # Analysis tools
    "python scripts/summarize.py --model=alexnet --image_size=227": Check(RUN),
    "python scripts/summarize.py --model=resnet50 --format=markdown --memory --speed": Check(
        RUN, "python scripts/summarize.py --model=lenet5 --format=markdown --memory --speed"
    ),
    "python scripts/zoo_report.py --readme=README.md": Check(
        RUN,
        "python scripts/zoo_report.py --models=lenet5,alexnet --readme={tmp}/README.md "
        "--output={tmp}/zoo.md --quiet",
    ),
    "python scripts/show_filters.py --workdir=workdirs/lenet5 --output=filters.png": Check(
        RUN, "python scripts/show_filters.py --workdir={lenet5} --output={tmp}/f.png", slow=True
    ),
    "python scripts/gradient_flow.py --output=gradient_flow.png": Check(
        PARSE, why="trains-free but compiles three deep ResNets; tests/test_gradient_flow.py"
    ),
    # GPU
    "scripts/gpu_smoke.sh": Check(DRY_RUN),
    "PYTHON=python SKIP_INSTALL=1 scripts/gpu_smoke.sh": Check(DRY_RUN),
    "python train.py --config=configs/resnet.py:50 "
    "--config.data.data_dir=$HOME/tensorflow_datasets --workdir=workdirs/r50": Check(
        PARSE, why=IMAGENET
    ),
    # Cloud TPU
    "export TPU_NAME=cnnx ZONE=us-east5-b ACCELERATOR_TYPE=v6e-16 PROJECT=your-project": Check(
        OUTSIDE, why="sets the variables the TPU scripts read (given to every DRY_RUN below)"
    ),
    "CAPACITY=spot scripts/tpu/create.sh": Check(DRY_RUN),
    "scripts/tpu/status.sh": Check(DRY_RUN),
    "scripts/tpu/launch.sh --config=configs/resnet.py:50 --workdir=gs://YOUR_BUCKET/r50 "
    "--config.data.data_dir=gs://YOUR_BUCKET/tensorflow_datasets": Check(DRY_RUN),
    "scripts/tpu/logs.sh": Check(DRY_RUN),
    "scripts/tpu/stop.sh": Check(DRY_RUN),
    "SKIP_INSTALL=1 scripts/tpu/launch.sh ...": Check(
        DRY_RUN,
        "SKIP_INSTALL=1 scripts/tpu/launch.sh --config=configs/resnet.py:50 "
        "--workdir=gs://YOUR_BUCKET/r50",
    ),
    "scripts/tpu/delete.sh": Check(DRY_RUN),
    "DRY_RUN=1 scripts/tpu/launch.sh ...": Check(
        DRY_RUN, "scripts/tpu/launch.sh --config=configs/resnet.py:50 --workdir=gs://B/r50"
    ),
    # gs:// workdirs, compilation cache
    "python train.py --config=configs/default.py --workdir=gs://YOUR_BUCKET/lenet5": Check(
        PARSE, why="needs a Cloud Storage bucket; tests/test_gcs.py runs it against an emulator"
    ),
    "python train.py --config=configs/resnet.py:18,smoke --workdir=workdirs/r18_smoke "
    "--compilation_cache=off": Check(
        PARSE, why="compiles ResNet-18; tests/train/test_compile_cache.py launches train.py twice"
    ),
    # A sweep on Cloud TPU
    "nohup .venv/bin/python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py "
    "--workdir=$HOME/sweeps/grid > sweep.log 2>&1 &": Check(
        OUTSIDE,
        "python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py --workdir={tmp}/grid",
        why="nohup and redirection around a sweep worker; tests/sweeps/test_workers.py runs them",
    ),
    ".venv/bin/python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py "
    "--workdir=$HOME/sweeps/grid --summarize_only": Check(
        RUN,
        "python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py "
        "--workdir={tmp}/grid --summarize_only",
        slow=True,
    ),
    "gcloud sql instances create cnnx-sweeps --database-version=POSTGRES_15 "
    "--tier=db-g1-small --region=us-central2 --no-assign-ip --network=default "
    "--project=$PROJECT": Check(OUTSIDE, why="Cloud SQL (gcloud)"),
    "gcloud sql users set-password postgres --instance=cnnx-sweeps "
    "--password=CHOOSE_A_PASSWORD --project=$PROJECT": Check(OUTSIDE, why="Cloud SQL (gcloud)"),
    "gcloud sql databases create sweeps --instance=cnnx-sweeps --project=$PROJECT": Check(
        OUTSIDE, why="Cloud SQL (gcloud)"
    ),
    "gcloud compute tpus tpu-vm ssh $TPU_NAME --zone=$ZONE --project=$PROJECT --worker=all "
    '--command="cd ~/cnnx && nohup .venv/bin/python scripts/sweep.py '
    "--sweep=configs/sweeps/efficientnet_grid.py --workdir=gs://YOUR_BUCKET/grid "
    "--storage=postgresql://postgres:CHOOSE_A_PASSWORD@DB_IP:5432/sweeps "
    '> sweep.log 2>&1 &"': Check(
        OUTSIDE,
        "python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py "
        "--workdir=gs://YOUR_BUCKET/grid "
        "--storage=postgresql://postgres:CHOOSE_A_PASSWORD@DB_IP:5432/sweeps",
        why="gcloud on a TPU slice; tests/sweeps/test_workers.py runs workers on PostgreSQL",
    ),
    ".venv/bin/python scripts/sweep.py --sweep=configs/sweeps/efficientnet_grid.py "
    "--workdir=gs://YOUR_BUCKET/grid "
    "--storage=postgresql://postgres:CHOOSE_A_PASSWORD@DB_IP:5432/sweeps "
    "--summarize_only": Check(PARSE, why="needs the sweep's database and bucket"),
    # Other clusters
    "srun --nodes=2 --ntasks-per-node=1 .venv/bin/python train.py --config=... "
    "--workdir=/shared/run": Check(
        OUTSIDE,
        "python train.py --config=configs/default.py --workdir=/shared/run",
        why="SLURM; tests/train/test_multiprocess.py runs two processes",
    ),
    "mpirun -n 2 -H host1,host2 .venv/bin/python train.py --config=... "
    "--workdir=/shared/run": Check(
        OUTSIDE,
        "python train.py --config=configs/default.py --workdir=/shared/run",
        why="Open MPI; tests/train/test_multiprocess.py runs two processes",
    ),
    "python train.py --coordinator_address=host0:1234 --num_processes=2 --process_id=0 ...": Check(
        PARSE,
        "python train.py --coordinator_address=host0:1234 --num_processes=2 --process_id=0 "
        "--config=configs/default.py --workdir=/shared/run",
        why="needs a second host; tests/train/test_multiprocess.py runs two processes",
    ),
    "python train.py --coordinator_address=host0:1234 --num_processes=2 --process_id=1 ...": Check(
        PARSE,
        "python train.py --coordinator_address=host0:1234 --num_processes=2 --process_id=1 "
        "--config=configs/default.py --workdir=/shared/run",
        why="needs a second host; tests/train/test_multiprocess.py runs two processes",
    ),
    # Profiling
    "python train.py --config=configs/resnet.py:50 --config.train.profile_steps=100,5 "
    "--workdir=DIR": Check(PARSE, why=IMAGENET),
    "tensorboard --logdir=DIR/profile": Check(OUTSIDE, why="TensorBoard's own command"),
    # Performance
    "python scripts/benchmark.py --models=resnet50 --batch_size=16 --image_size=224 --vs_torch "
    "--output=b.json": Check(PARSE, why="minutes of timing; tests/scripts/test_benchmark.py"),
    "python scripts/benchmark.py --models=resnet50,efficientnet_b0 --dtype=bfloat16": Check(
        PARSE, why="minutes of timing; tests/scripts/test_benchmark.py"
    ),
    "python scripts/benchmark.py --families --vs_torch --noconv_ceiling --repeats=5 "
    "--warmup=1": Check(PARSE, why="minutes of timing; tests/scripts/test_benchmark.py"),
    "python scripts/benchmark.py --depthwise_layers --batch_size=8 --repeats=5 --warmup=1": Check(
        PARSE, why="minutes of timing; tests/scripts/test_benchmark.py"
    ),
    "python scripts/benchmark.py --models=resnet50 --input_pipeline": Check(
        PARSE, why="minutes of timing; tests/scripts/test_benchmark.py"
    ),
    "python scripts/memory_report.py --models=resnet152 --batch_size=8 --mesh=1,1,1 "
    "--remat=both": Check(PARSE, why="compiles ResNet-152 train steps (minutes)"),
    # Sharding and memory
    "python train.py --config=configs/convnext.py:large --config.mesh.fsdp=8 --workdir=...": Check(
        PARSE,
        "python train.py --config=configs/convnext.py:large --config.mesh.fsdp=8 --workdir=/tmp/x",
        why=IMAGENET,
    ),
    "python train.py --config=configs/efficientnet.py:b7 --config.mesh.fsdp=8 "
    "--config.model.remat=True --workdir=workdirs/b7": Check(PARSE, why=IMAGENET),
    "XLA_FLAGS=--xla_force_host_platform_device_count=8 python train.py "
    "--config=configs/resnet_cifar.py:20,smoke --workdir=/tmp/fsdp --config.mesh.fsdp=4 "
    "--config.mesh.fsdp_min_size=1000 --config.model.remat=True "
    """"--config.mesh.rules=(('head', 'replicated'), ('.*', 'auto'))\"""": Check(
        PARSE,
        why="FSDP + remat over 8 fake devices compiles for a minute; "
        "tests/parallel/test_sharding.py trains that setting",
    ),
    "python scripts/memory_report.py --models=vit_l_16,convnext_xlarge --batch_size=64 "
    "--optim=adamw --mesh=8,1,1 --mesh=1,8,1 --remat=both": Check(
        PARSE, why="compiles ViT-L and ConvNeXt-XL train steps (minutes)"
    ),
}


# --- reading the README --------------------------------------------------------------------


def readme_commands(text: str) -> list[str]:
    """The commands of every ```bash block: comments dropped, continuations joined, each
    normalised to `shlex.join` of its words."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n", " ", block)
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def _normalise(command: str) -> str:
    return shlex.join(shlex.split(command))


TABLE = {_normalise(k): v for k, v in COMMANDS.items()}


def _commands() -> list[str]:
    return readme_commands(README.read_text())


def test_every_readme_command_is_covered():
    commands = _commands()
    assert len(commands) > 30  # the parser found the blocks
    missing = [c for c in commands if c not in TABLE]
    stale = [c for c in TABLE if c not in commands]
    assert not missing, (
        "README commands with no row in tests/test_readme_commands.py COMMANDS (add a smoke "
        "form or say why it is only parsed):\n  " + "\n  ".join(missing)
    )
    assert not stale, "COMMANDS rows no longer in the README:\n  " + "\n  ".join(stale)


def test_the_reader_sees_a_new_command(tmp_path):
    """A command added to a ```bash block is found (so the coverage test above can fail)."""
    text = (
        README.read_text() + "\n```bash\npython train.py --config=configs/new.py \\\n  --x=1\n```\n"
    )
    new = [c for c in readme_commands(text) if c not in TABLE]
    assert new == ["python train.py --config=configs/new.py --x=1"]


# --- the checks every command gets ----------------------------------------------------------


def _split(command: str) -> tuple[dict[str, str], list[str]]:
    """(leading VAR=value assignments, the remaining words)."""
    words = shlex.split(command)
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    return env, words


def _entry(words: list[str]) -> tuple[str, list[str]] | None:
    """(script relative to the repo, its arguments) for a cnnx Python command, else None."""
    for i, w in enumerate(words):
        if w in ("python", ".venv/bin/python") and i + 1 < len(words):
            return words[i + 1], words[i + 2 :]
    return None


def _absl_flag_names(script: Path) -> tuple[set[str], set[str]]:
    """(defined flag names, required ones), read from the script's DEFINE_* calls."""
    names, required = {"help", "helpfull", "helpshort", "flagfile"}, set()
    for node in ast.walk(ast.parse(script.read_text())):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "").startswith("DEFINE_")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(node.args[0].value)
            if any(k.arg == "required" and getattr(k.value, "value", False) for k in node.keywords):
                required.add(node.args[0].value)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "define_flags":
            # Shared flag sets: cnnx.train.distributed (multi-process), cnnx.train.compile_cache.
            module = importlib.import_module(f"cnnx.train.{node.func.value.id}")
            names.update(module.FLAGS)
    return names, required


def _check_absl(script: str, args: list[str], monkeypatch):
    from absl import flags
    from ml_collections import config_flags

    names, required = _absl_flag_names(ROOT / script)
    given = set()
    for arg in args:
        assert arg.startswith("--"), f"{script}: stray argument {arg!r}"
        name = arg[2:].split("=", 1)[0]
        given.add(name)
        if name.startswith("config."):
            continue
        known = name in names or (name.startswith("no") and name[2:] in names)
        assert known, f"{script} has no flag --{name} (its flags: {sorted(names)})"
    assert required <= given, f"{script} requires {sorted(required - given)}"
    config_args = [a for a in args if a == "--config" or a.startswith(("--config=", "--config."))]
    if not any(a.startswith("--config=") for a in config_args):
        return
    monkeypatch.chdir(ROOT)
    fv = flags.FlagValues()
    argv = [script, *config_args]
    # Override flags (--config.a.b) are defined from the command line it is given.
    config_flags.DEFINE_config_file(
        "config", None, "", flag_values=fv, lock_config=True, sys_argv=argv
    )
    from cnnx.config_schema import validate

    try:
        fv(argv)  # loads the file, applies every override
        validate(fv.config if "model" in fv.config else fv.config.train)
    except Exception as e:  # config file, argument, override or schema: name it
        raise AssertionError(f"{shlex.join(argv)}: {type(e).__name__}: {e}") from e


class _Parsed(Exception):
    """Raised right after an argparse script parsed its arguments."""


def _check_script_flags(script: str, args: list[str], monkeypatch):
    """A scripts/ tool parses `args`: with its own absl `FLAGS` (`cnnx.script_flags`), or,
    for a script still on argparse (scripts/sweep.py), with its parser, stopped right after."""
    import argparse
    import importlib.util

    from cnnx import script_flags

    spec = importlib.util.spec_from_file_location(f"_readme_{Path(script).stem}", ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.chdir(ROOT)
    if not hasattr(module, "FLAGS"):
        original = argparse.ArgumentParser.parse_args

        def parse_then_stop(self, a=None, namespace=None):
            raise _Parsed(original(self, a, namespace))

        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    try:
        if hasattr(module, "FLAGS"):
            script_flags.parse(module.FLAGS, args, module.__doc__, program=script)
            return
        module.main(args)
    except _Parsed:
        return
    except SystemExit as e:
        raise AssertionError(f"{script} {shlex.join(args)}: refused (exit {e.code})") from e
    raise AssertionError(f"{script}: main() returned without parsing its arguments")


def _check_words(words: list[str], monkeypatch):
    """The program exists and, for a cnnx Python entry point, its arguments parse."""
    if words[0] == "make":
        p = subprocess.run(
            ["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert p.returncode == 0, p.stderr
        return
    entry = _entry(words)
    if entry is None:
        if words[0].startswith("scripts/"):
            assert os.access(ROOT / words[0], os.X_OK), f"{words[0]} is not an executable file"
        return
    script, args = entry
    assert (ROOT / script).is_file(), f"{script} does not exist"
    if script in ABSL_SCRIPTS:
        _check_absl(script, args, monkeypatch)
    else:
        _check_script_flags(script, args, monkeypatch)


def _form(command: str, check: Check, tmp: Path, lenet5: str | None = None) -> str:
    text = check.argv or command
    return text.replace("{tmp}", str(tmp)).replace("{lenet5}", lenet5 or str(tmp / "lenet5"))


def _fast_commands():
    return [c for c, k in TABLE.items() if not k.slow]


@pytest.mark.parametrize("command", list(TABLE))
def test_command_parses(command, tmp_path, monkeypatch):
    check = TABLE[command]
    if check.how in (PARSE, OUTSIDE):
        assert check.why, f"say why {command!r} is not run"
    _, words = _split(_form(command, check, tmp_path))
    if check.how == OUTSIDE and _entry(words) is None:
        return  # another program's command with no cnnx command inside (export, tensorboard)
    if check.how == DRY_RUN:
        return  # test_dry_run runs it
    _check_words(words, monkeypatch)


# --- the smoke forms ------------------------------------------------------------------------


def _run(command: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env_words, words = _split(command)
    full_env = {**os.environ, **(env or {}), **env_words}
    if words[0] in ("python", ".venv/bin/python"):
        words[0] = sys.executable
    return subprocess.run(
        words, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "command", [c for c, k in TABLE.items() if k.how == DRY_RUN], ids=lambda c: c[:40]
)
def test_dry_run(command, tmp_path):
    if not shutil.which("bash"):
        pytest.skip("needs bash")
    check = TABLE[command]
    env_words, words = _split(_form(command, check, tmp_path))
    env = {**os.environ, **TPU_ENV, **env_words, "DRY_RUN": "1"}
    p = subprocess.run(
        ["bash", *words], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr[-2000:]


RUN_IN_PROCESS = [c for c, k in TABLE.items() if k.how == RUN and not k.slow]


@pytest.mark.parametrize("command", RUN_IN_PROCESS, ids=lambda c: c[:50])
def test_smoke_run(command, tmp_path, monkeypatch, capsys):
    """Cheap smoke forms of the scripts/ tools run in this process."""
    import importlib.util

    check = TABLE[command]
    _, words = _split(_form(command, check, tmp_path))
    script, args = _entry(words)
    if any(a.startswith("--readme") for a in args):  # the README stays untouched: a copy
        shutil.copy(README, tmp_path / "README.md")
    monkeypatch.chdir(ROOT)
    spec = importlib.util.spec_from_file_location(f"_readme_run_{Path(script).stem}", ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(args) in (0, None)
    assert capsys.readouterr().out


# The README's first training command: the `lenet5` fixture runs its smoke form.
TRAINING_COMMAND = "python train.py --config=configs/default.py --workdir=workdirs/lenet5"


@pytest.fixture(scope="module")
def lenet5(tmp_path_factory):
    """The README's first training command in smoke form: a lenet5 workdir."""
    workdir = tmp_path_factory.mktemp("readme") / "lenet5"
    key = _normalise(TRAINING_COMMAND)
    p = _run(_form(key, TABLE[key], workdir.parent, str(workdir)))
    assert p.returncode == 0, p.stderr[-3000:]
    assert (workdir / "results.json").exists()
    return str(workdir)


@pytest.mark.slow  # a smoke training run, then each command on its workdir (~20 s each)
@pytest.mark.parametrize(
    "command",
    [c for c, k in TABLE.items() if k.how == RUN and k.slow and c != _normalise(TRAINING_COMMAND)],
    ids=lambda c: c[:50],
)
def test_smoke_run_on_trained_workdir(command, lenet5, tmp_path):
    p = _run(_form(command, TABLE[command], tmp_path, lenet5))
    assert p.returncode == 0, p.stderr[-3000:]


@pytest.mark.parametrize(
    "command",
    [
        "python train.py --config=configs/nope.py --workdir=x",  # no such config
        "python train.py --config=configs/resnet.py:51 --workdir=x",  # no such config arg
        "python train.py --config=configs/default.py --wrkdir=x",  # no such flag
        "python train.py --config=configs/default.py --config.optim.lerning_rate=1 --workdir=x",
        "python train.py --config=configs/default.py --config.optim.base_lr=-1 --workdir=x",
        "python eval.py --split=test",  # a required flag left out
        "python scripts/nope.py --x=1",  # no such script
        "python scripts/summarize.py --model=alexnet --resolutoin=227",  # no such flag
        "python scripts/summarize.py --model=alexnet --resolution=227",  # an old name
        "python scripts/benchmark.py --models=resnet50 --dtype=float64",  # not an allowed value
        "python scripts/memory_report.py --batch_size=8",  # a required flag left out
        "scripts/tpu/nope.sh",
        "make nope",
    ],
)
def test_a_wrong_command_is_caught(command, monkeypatch):
    _, words = _split(command)
    with pytest.raises(AssertionError):
        _check_words(words, monkeypatch)
