"""Finding 2, vanishing (or exploding) gradients: in a deep plain network the gradient norm
changes geometrically from layer to layer, identity shortcuts keep it within a small factor.

Runs: those of the degradation finding (shared workdirs). Per network and seed, the tool of
cnnx/analysis/gradient_flow.py gives every layer's kernel-gradient norm for one batch (small:
64 test digits; paper: random images), at initialisation and at the trained checkpoint. The
measure is the dynamic range over the convolutions, log10(max / min) in decades. With
BatchNorm, as here, the plain nets' gradients *explode* towards the input rather than vanish
(He et al. 2015 §4.1 expected no vanishing with BN; Philipp et al. 2018 analyse the
explosion); either way the claim is the geometric change, which the range measures.
"""

import math

import numpy as np

from cnnx.findings import figures
from cnnx.findings.degradation import SMOKE_DEPTH, by_label, degradation_runs
from cnnx.findings.registry import Finding, Measurement, register
from cnnx.findings.verdict import Comparison

RESOLUTION = {"small": 16, "smoke": 8, "paper": 32}


def digits_batch(resolution: int, count: int = 64):
    """`count` test digits as the digits recipe feeds them: resized, (x / 255 − 0.5) / 0.5."""
    import jax
    import jax.numpy as jnp

    from cnnx.data.sources import digits_source

    images, labels = digits_source().arrays("test")
    x = jnp.asarray(images[:count], jnp.float32) / 255.0
    x = jax.image.resize(x, (len(x), resolution, resolution, x.shape[-1]), "bilinear")
    return (x - 0.5) / 0.5, labels[:count]


def conv_range(norms: list) -> float:
    """log10(max / min) of the convolutions' gradient norms (the classifier left out)."""
    conv = [n for layer, n in norms if not layer.startswith("head")]
    return math.log10(max(conv) / max(min(conv), 1e-30))


class Vanishing(Finding):
    name = "vanishing"
    number = 2
    title = "Vanishing/exploding gradients: plain vs residual"
    claim = (
        "Through a deep plain network the gradient norm changes geometrically with depth "
        "(vanishing, or with BatchNorm exploding towards the input); identity shortcuts keep "
        "it within a small factor across all layers."
    )
    source = (
        "Glorot & Bengio 2010 §4; He et al. 2015 §4.1; Philipp et al. 2018, The exploding "
        "gradient problem demystified"
    )
    rule = (
        "Range of the per-layer gradient norms over the convolutions, log10(max/min), per "
        "seed, at initialisation and after training: plain-56 above ResNet-56 by more than "
        "the seed spread and a floor of 1 decade."
    )
    budget = "the degradation runs (shared) plus 16 gradient evaluations: about a minute."

    def runs(self, scale):
        return degradation_runs(scale)

    def measure(self, records, scale):
        from cnnx.analysis.gradient_flow import layer_gradient_norms
        from cnnx.train.checkpoint import load_variables

        resolution = RESOLUTION[scale.name]
        images, labels = (None, None) if scale.paper else digits_batch(resolution)
        values, norms = {}, {}
        for rec in records.values():
            name, depth = rec.run.tag("model"), rec.run.tag("depth")
            options = {"depth": SMOKE_DEPTH[depth]} if scale.smoke else {}
            common = dict(resolution=resolution, images=images, labels=labels, **options)
            at_init = layer_gradient_norms(name, seed=rec.run.seed, **common)
            trained = None
            if rec.status == "completed":
                variables = load_variables(rec.workdir)
                trained = layer_gradient_norms(name, variables=variables, **common)
            norms[rec.run.name] = (at_init, trained)
            values[rec.run.name] = {
                "network": rec.run.label,
                "seed": rec.run.seed,
                "layers": len(at_init),
                "range_init_decades": conv_range(at_init),
                "range_trained_decades": conv_range(trained) if trained else float("nan"),
                "first_over_last_init": at_init[0][1] / at_init[-2][1],
            }
        groups = by_label(records)

        def ranges(label, key):
            return [values[r.run.name][key] for r in groups[label]]

        deep = [label for label in groups if label.endswith(str(max(SMOKE_DEPTH)))]
        plain, res = sorted(deep, key=lambda s: not s.startswith("plain"))
        comparisons = [
            Comparison(
                f"{plain}'s gradient norms span more decades than {res}'s, {when}",
                "log10(max/min) of the per-layer gradient norms (decades)",
                res,
                plain,
                ranges(res, key),
                ranges(plain, key),
                "greater",
                1.0,
            )
            for when, key in (
                ("at initialisation", "range_init_decades"),
                ("after training", "range_trained_decades"),
            )
            if not any(math.isnan(v) for v in ranges(res, key) + ranges(plain, key))
        ]
        notes = []
        if len(comparisons) < 2:
            notes.append("A run did not complete: only the initialisation is compared.")
        return Measurement(values, comparisons, notes, plot={"norms": norms})

    def figure(self, records, measurement, path):
        groups = by_label(records)
        with figures.figure(path, ncols=2, width=10) as (_, axes):
            for ax, index, title in zip(axes, (0, 1), ("at initialisation", "after training")):
                for i, (label, recs) in enumerate(groups.items()):
                    norms = measurement.plot["norms"][recs[0].run.name][index]
                    if not norms:
                        continue
                    ys = [n for _, n in norms]
                    xs = np.linspace(0.0, 1.0, len(ys))
                    style = "--" if label.startswith("plain") else "-"
                    ax.plot(xs, ys, style, color=f"C{i}", label=label, linewidth=1.4)
                ax.set_yscale("log")
                ax.set_xlabel("layer position (0: first conv, 1: classifier)")
                ax.set_ylabel("‖∂L/∂W‖ of the layer (log)")
                ax.set_title(
                    f"gradient norm per layer, {title} (seed {recs[0].run.seed})", fontsize=9
                )
                ax.grid(True, alpha=0.3)
            axes[0].legend(fontsize=8)


register(Vanishing())
