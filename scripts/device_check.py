"""The accelerator check of issue 26: train.py end to end on a GPU (or TPU), its speed per chip.

On a bare GPU machine with no internet (Python 3.12, JAX with CUDA; no TensorFlow,
ml_collections or clu), from the repository root:

    make device-wheels                     # here, with pip: the small wheels it lacks, in .whl/
    # there (carry .whl):
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:$PWD python3 scripts/device_check.py --out=$OUT [--profile]

For each model it runs `train.py` itself (synthetic data through the input pipeline, log lines,
asynchronous checkpoints and evaluations on) for --steps steps, and reads its results.json:

  ResNet-50 bfloat16 batch 256, EfficientNet-B0 256, ViT-B/16 128, ConvNeXt-T 128 (224 px;
  model.dtype 'auto': bfloat16 on a bf16-capable chip)

and prints per model images/s per chip, MFU, compile time, peak memory and host share (with
its causes: input, metrics, logging, checkpoint, other), then one float32 train step of
ResNet-50 (batch 8) on the device against the same step on the CPU (a subprocess with
JAX_PLATFORMS=cpu; pass: loss within 1e-3 relative). --profile keeps a
jax.profiler trace of 5 steps of each model (the files go to --out). `--smoke` runs the same
machinery with LeNet-5 for a few steps at 32 px (the test on a CPU).
"""

import json
import os
import subprocess
import sys
import tarfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import flags  # noqa: E402

from cnnx import script_flags  # noqa: E402

# (model, model.dtype, global batch): issue 26's list, 224 px.
MODELS = (
    ("resnet50", "bfloat16", 256),
    ("efficientnet_b0", "auto", 256),
    ("vit_b_16", "auto", 128),
    ("convnext_tiny", "auto", 128),
)
SMOKE_MODELS = (("lenet5", "auto", 16),)
# The float32 step compared with the CPU's: (model, batch, image size).
F32_CHECK, SMOKE_F32_CHECK = ("resnet50", 8, 224), ("lenet5", 8, 32)
F32_RTOL = 1e-3

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "out", os.environ.get("OUT") or "/tmp/device_check", "Output folder.", flag_values=FLAGS
)
flags.DEFINE_integer("steps", 100, "Train steps per model.", flag_values=FLAGS)
flags.DEFINE_integer("image_size", 224, "Synthetic images' side in pixels.", flag_values=FLAGS)
flags.DEFINE_list("models", None, "Only these of the list (default: all).", flag_values=FLAGS)
flags.DEFINE_bool("profile", False, "Keep a jax.profiler trace of each model.", flag_values=FLAGS)
flags.DEFINE_bool("smoke", False, "LeNet-5, a few steps at 32 px (tests).", flag_values=FLAGS)
flags.DEFINE_integer("timeout_s", 240, "Limit per train.py run.", flag_values=FLAGS)
flags.DEFINE_string(
    "one_step",
    None,
    "Internal: print one float32 step's loss as JSON (model,batch,size).",
    flag_values=FLAGS,
)


def train_command(
    model: str, dtype: str, batch: int, size: int, steps: int, workdir: str, profile: bool
) -> list[str]:
    """train.py's command line for a synthetic-data run with checkpoints and evaluations."""
    every = max(1, steps // 2)
    overrides = {
        "model.name": model,
        "model.dtype": dtype,
        "data.source": "synthetic",
        "data.train_split": "train",
        "data.eval_split": "test",
        "data.num_classes": 10,
        "data.image_size": size,
        "data.train_pp": "inception_crop|flip|normalize",
        "data.eval_pp": "resize_crop|normalize",
        "train.batch_size": batch,
        "eval.batch_size": min(batch, 128),
        "train.num_steps": steps,
        "train.log_every_steps": max(1, steps // 10),
        "eval.every_steps": every,
        "ckpt.every_steps": every,
        "ckpt.asynchronous": True,
        "schedule.warmup_epochs": 0.0,
    }
    if profile:
        overrides["train.profile_steps"] = f"{max(1, steps // 2 + 2)},5"
    command = [sys.executable, os.path.join(REPO, "train.py"), "--config=configs/default.py"]
    command += [f"--config.{k}={v}" for k, v in overrides.items()]
    return [*command, f"--workdir={workdir}"]


def summarize(name: str, results: dict) -> dict:
    """One table row from a run's results.json."""
    return {
        "model": name,
        "status": results.get("status"),
        "device": results.get("device_kind"),
        "dtype": results.get("compute_dtype"),
        "images_per_s_per_chip": results.get("images_per_s_per_chip"),
        "tflops_per_chip": results.get("tflops_per_chip"),
        "mfu": results.get("mfu"),
        "compile_s": results.get("compile_s"),
        "peak_memory_mb": results.get("peak_memory_mb"),
        "host_share": results.get("host_share"),
        # Its parts by cause (cnnx.train.throughput: input, metrics, logging, checkpoint, other).
        "host_share_parts": {
            k.split("/", 1)[1]: v for k, v in results.items() if k.startswith("host_share/")
        },
        "eval_top1": results.get("eval/top1"),
    }


def _cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _parts(parts) -> str:
    """'input 1.2, checkpoint 0.4, other 0.1': the host share's causes in percent, largest
    first, those under 0.05% left out ('-': none measured)."""
    if not parts:
        return "-"
    shown = [(k, 100 * v) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])]
    return ", ".join(f"{k} {v:.1f}" for k, v in shown if v >= 0.05) or "none"


def table(rows: list[dict]) -> str:
    """The rows as the README's Markdown table."""
    lines = [
        "| model | dtype | images/s/chip | TFLOP/s/chip | MFU | compile s | peak MiB "
        "| host share | of which (%) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        mfu = None if r.get("mfu") is None else 100 * r["mfu"]
        host = None if r.get("host_share") is None else 100 * r["host_share"]
        percent = lambda v: "-" if v is None else f"{v:.1f}%"  # noqa: E731
        lines.append(
            f"| {r['model']} | {r.get('dtype') or r.get('status')} | "
            f"{_cell(r.get('images_per_s_per_chip'), ',.0f')} | "
            f"{_cell(r.get('tflops_per_chip'), '.1f')} | {percent(mfu)} | "
            f"{_cell(r.get('compile_s'), '.1f')} | {_cell(r.get('peak_memory_mb'), ',.0f')} | "
            f"{percent(host)} | {_parts(r.get('host_share_parts'))} |"
        )
    return "\n".join(lines)


def run_model(args, model: str, dtype: str, batch: int, size: int) -> dict:
    """Runs train.py for one model; its row (status 'failed: ...' when it did not finish)."""
    workdir = os.path.join(args.out, "workdirs", model)
    command = train_command(model, dtype, batch, size, args.steps, workdir, args.profile)
    log_path = os.path.join(args.out, f"{model}.log")
    t = time.time()
    with open(log_path, "w") as log:
        try:
            rc = subprocess.run(
                command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=args.timeout_s
            ).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    results_path = os.path.join(workdir, "results.json")
    if rc != 0 or not os.path.exists(results_path):
        return {"model": model, "status": f"failed ({rc}; see {log_path})"}
    with open(results_path) as f:
        row = summarize(model, json.load(f))
    row["wall_s"] = time.time() - t
    if args.profile:
        _pack_profile(
            os.path.join(workdir, "profile"), os.path.join(args.out, f"{model}_trace.tgz")
        )
    return row


def _pack_profile(folder: str, target: str) -> None:
    """The run's jax.profiler trace as one archive (files come back from a device flat)."""
    if os.path.isdir(folder):
        with tarfile.open(target, "w:gz") as tar:
            tar.add(folder, arcname="profile")


def one_step_loss(model_name: str, batch: int, size: int) -> dict:
    """The loss and gradient norm of the trainer's first float32 step of `model_name` on a
    fixed batch and initialisation, on JAX's default device."""
    import jax
    import numpy as np

    from cnnx import models
    from cnnx.analysis.reference_steps import train_setup
    from cnnx.train.state import jit_initialize

    model = models.create(model_name, num_classes=10)
    setup = train_setup(model, (batch, size, size, 3), 10)
    state = jit_initialize(setup.create, jax.random.PRNGKey(0), setup.state_shardings)
    rng = np.random.default_rng(0)
    data = {
        "image": rng.standard_normal((batch, size, size, 3), np.float32),
        "label": rng.integers(0, 10, (batch,)).astype(np.int32),
    }
    data = jax.device_put(data, setup.batch_sharding)
    _, metrics = setup.step(state, data, jax.device_put(jax.random.PRNGKey(1), setup.replicated))
    return {
        "platform": jax.devices()[0].platform,
        "loss": float(metrics["loss"]),
        "grad_norm": float(metrics["grad_norm"]),
    }


def float32_check(model: str, batch: int, size: int) -> dict:
    """One float32 step here and on the CPU (a subprocess): the losses and whether they agree."""
    here = one_step_loss(model, batch, size)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--one_step={model},{batch},{size}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = json.loads(out.strip().splitlines()[-1])
    rel = abs(here["loss"] - cpu["loss"]) / abs(cpu["loss"])
    return {"model": model, "device": here, "cpu": cpu, "loss_rel_diff": rel, "ok": rel <= F32_RTOL}


def main(argv=None) -> dict:
    args = script_flags.parse(FLAGS, argv, __doc__)
    if args.one_step:
        name, batch, size = args.one_step.split(",")
        print(json.dumps(one_step_loss(name, int(batch), int(size))))
        return {}
    os.makedirs(args.out, exist_ok=True)
    models_list = SMOKE_MODELS if args.smoke else MODELS
    size = 32 if args.smoke else args.image_size
    rows = []
    for model, dtype, batch in models_list:
        if args.models and model not in args.models:
            continue
        rows.append(run_model(args, model, dtype, batch, size))
        print(json.dumps(rows[-1]), flush=True)
    check = float32_check(*(SMOKE_F32_CHECK if args.smoke else F32_CHECK))
    report = {"rows": rows, "float32_check": check}
    text = table(rows) + (
        f"\n\nfloat32 step of {check['model']}: loss {check['device']['loss']:.6f} on "
        f"{check['device']['platform']}, {check['cpu']['loss']:.6f} on the CPU, relative "
        f"difference {check['loss_rel_diff']:.2e} ({'ok' if check['ok'] else 'FAILED'}, "
        f"limit {F32_RTOL:g})"
    )
    print(text)
    with open(os.path.join(args.out, "device_check.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(args.out, "device_check.md"), "w") as f:
        f.write(text + "\n")
    return report


if __name__ == "__main__":
    main()
