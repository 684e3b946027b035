"""Plots per-layer gradient norms at initialisation for plain vs residual CIFAR networks.

One batch (random images and labels), softmax cross-entropy, train mode (batch statistics);
layers from input to output on the x axis (as a fraction of depth, so depths line up), the
gradient norm of each layer's kernel on a log y axis. Also prints a table.

  python scripts/gradient_flow.py --depths 20 56 110 --out gradient_flow.png
"""

import argparse
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from cnnx.analysis.gradient_flow import layer_gradient_norms
from cnnx.backends.cpu import flags as xla_flags

xla_flags.apply()  # before JAX starts: XLA reads XLA_FLAGS once


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", type=int, nargs="+", default=[20, 56, 110], help="6n+2 depths")
    p.add_argument("--resolution", type=int, default=32, help="image size of the batch")
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--seed", type=int, default=0, help="parameter and data seed")
    p.add_argument("--out", default="gradient_flow.png", help="output PNG path")
    return p.parse_args(argv)


def main(argv=None) -> dict[str, list[tuple[str, float]]]:
    args = parse_args(argv)
    results = {}
    for depth in args.depths:
        for kind in ("plain", "resnet"):
            name = f"{kind}{depth}_cifar"
            results[name] = layer_gradient_norms(
                name, resolution=args.resolution, batch=args.batch, seed=args.seed
            )

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, depth in enumerate(args.depths):
        for kind, style in (("plain", "--"), ("resnet", "-")):
            norms = [n for _, n in results[f"{kind}{depth}_cifar"]]
            xs = [j / max(1, len(norms) - 1) for j in range(len(norms))]
            label = f"{'plain' if kind == 'plain' else 'ResNet'}-{depth}"
            ax.plot(xs, norms, style, color=colors[i % len(colors)], label=label)
    ax.set_yscale("log")
    ax.set_xlabel("layer (input → output, fraction of depth)")
    ax.set_ylabel("‖∂L/∂W‖₂ at initialisation")
    ax.set_title("Per-layer gradient norm: plain vs residual CIFAR networks")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    plt.close(fig)

    print(f"{'model':<18}{'layers':>7}{'first':>12}{'middle':>12}{'last conv':>12}{'fc':>12}")
    for name, rows in results.items():
        norms = [n for _, n in rows]
        print(
            f"{name:<18}{len(norms):>7}{norms[0]:>12.3g}{norms[len(norms) // 2]:>12.3g}"
            f"{norms[-2]:>12.3g}{norms[-1]:>12.3g}"
        )
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
