"""Plots per-layer gradient norms at initialisation for plain vs residual CIFAR networks.

One batch (random images and labels), softmax cross-entropy, train mode (batch statistics);
layers from input to output on the x axis (as a fraction of depth, so depths line up), the
gradient norm of each layer's kernel on a log y axis. Also prints a table.

  python scripts/gradient_flow.py --depths 20,56,110 --output gradient_flow.png
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import flags

from cnnx import process_defaults, script_flags

process_defaults.apply()  # before JAX, TF and etils start (XLA reads XLA_FLAGS once)

FLAGS = flags.FlagValues()
flags.DEFINE_list(
    "depths",
    ["20", "56", "110"],
    "Comma-separated 6n+2 depths (plain and ResNet each).",
    flag_values=FLAGS,
)
flags.DEFINE_integer("image_size", 32, "Side of the random images, in pixels.", flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 32, "Images in the one batch.", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Parameter and data seed.", flag_values=FLAGS)
flags.DEFINE_string("output", "gradient_flow.png", "The PNG to write.", flag_values=FLAGS)


def plot(results: dict[str, list[tuple[str, float]]], depths: list[int], path: str) -> str:
    """Writes the gradient-norm plot: one colour per depth, dashed plain, solid ResNet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=130)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, depth in enumerate(depths):
        for kind, style in (("plain", "--"), ("resnet", "-")):
            norms = [n for _, n in results[f"{kind}{depth}_cifar"]]
            xs = [j / max(1, len(norms) - 1) for j in range(len(norms))]
            label = f"{'plain' if kind == 'plain' else 'ResNet'}-{depth}"
            ax.plot(xs, norms, style, color=colors[i % len(colors)], label=label, linewidth=1.6)
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("layer position (0 = first conv, 1 = classifier)", fontsize=11)
    ax.set_ylabel("gradient norm ‖∂L/∂W‖₂ of the layer's kernel (log)", fontsize=11)
    ax.set_title(
        "Gradient norm per layer at initialisation: plain (dashed) vs residual (solid)\n"
        "CIFAR networks, one random batch, train-mode BatchNorm",
        fontsize=11,
    )
    ax.tick_params(labelsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(ncol=len(depths), fontsize=9, title="network", title_fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None) -> dict[str, list[tuple[str, float]]]:
    args = script_flags.parse(FLAGS, argv, __doc__)
    try:
        depths = [int(d) for d in args.depths]
    except ValueError:
        raise SystemExit(f"error: --depths={','.join(args.depths)}: integers (6n+2)") from None
    from tqdm import tqdm

    from cnnx.analysis.gradient_flow import layer_gradient_norms

    names = [f"{kind}{depth}_cifar" for depth in depths for kind in ("plain", "resnet")]
    results = {}
    # One compile and one step per network: the deep ones take most of the time.
    for name in (bar := tqdm(names, desc="gradient norms", unit="net", file=sys.stderr)):
        bar.set_postfix_str(name)
        results[name] = layer_gradient_norms(
            name, resolution=args.image_size, batch=args.batch_size, seed=args.seed
        )
    plot(results, depths, args.output)

    print(f"{'model':<18}{'layers':>7}{'first':>12}{'middle':>12}{'last conv':>12}{'fc':>12}")
    for name, rows in results.items():
        norms = [n for _, n in rows]
        print(
            f"{name:<18}{len(norms):>7}{norms[0]:>12.3g}{norms[len(norms) // 2]:>12.3g}"
            f"{norms[-2]:>12.3g}{norms[-1]:>12.3g}"
        )
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
