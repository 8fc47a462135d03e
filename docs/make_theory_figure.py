"""Make docs/figures/weights.png: the flow weight w(r) of every (divergence, generator loss) pair.

    python docs/make_theory_figure.py [--out docs/figures/weights.png]

Left: the f-GAN loss ℓ_G = −f*(T), whose weight w_f(r) = r² f''(r) depends on the divergence.
Right: the losses written through the log ratio (saturating, non-saturating, least squares, hinge),
whose weight is the same for every divergence. Computed by scoregan.flows.weight.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

try:  # run from a checkout without installing: the repository root holds the package
    import scoregan  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from scoregan import flows  # noqa: E402
from scoregan.objectives.divergences import DIVERGENCES, divergence  # noqa: E402
from scoregan.objectives.generator_losses import GENERATOR_LOSSES  # noqa: E402

LABELS = {
    "kl": "KL: r",
    "reverse_kl": "reverse KL: 1",
    "pearson": "Pearson χ²: 2r²",
    "neyman": "Neyman χ²: 2/r",
    "hellinger": "Hellinger: √r/2",
    "js": "JS: r/(2(1+r))",
    "sgan": "SGAN: r/(1+r)",
}
LOSS_LABELS = {
    "saturating": "saturating log(1−D): r/(1+r)",
    "non_saturating": "non-saturating −log D: 1/(1+r)",
    "least_squares": "least squares ½(D−1)²: r/(1+r)³",
    "hinge": "hinge −u (u ≈ log r): 1",
}
LOSS_STYLES = {
    "saturating": {"color": "tab:blue", "lw": 2.5},
    "non_saturating": {"color": "tab:orange", "lw": 2.5},
    "least_squares": {"color": "tab:green", "lw": 1.5, "ls": "-."},
    "hinge": {"color": "0.35", "lw": 1.2, "ls": "--"},
}


def make_figure(out: Path) -> Path:
    u = torch.linspace(-10, 10, 801, dtype=torch.float64)
    fig, (ax_f, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)

    for name in DIVERGENCES:
        if name == "alpha":
            continue
        ax_f.plot(u, flows.weight(name, "fgan", u), label=LABELS[name])
    for a in (-1.0, 0.5, 2.0):
        ax_f.plot(u, flows.weight(divergence("alpha", alpha=a), "fgan", u), ls=":", lw=1, label=f"α = {a:g}: r^α")
    ax_f.set_title("f-GAN loss −f*(T): w = r² f''(r)")

    for name in GENERATOR_LOSSES:
        if name == "fgan":
            continue
        ax_l.plot(u, flows.weight("sgan", name, u), label=LOSS_LABELS[name], **LOSS_STYLES[name])
    ax_l.annotate("non-saturating: w → 1\nas r → 0", xy=(-6, 1.0), xytext=(-9.5, 1e2),
                  arrowprops={"arrowstyle": "->"}, fontsize=9)
    ax_l.annotate("saturating: w ≈ r → 0", xy=(-8, float(torch.sigmoid(torch.tensor(-8.0)))), xytext=(-5, 1e-6),
                  arrowprops={"arrowstyle": "->"}, fontsize=9)
    ax_l.set_title("losses through D = r/(1+r) (same for every f)")

    for ax in (ax_f, ax_l):
        ax.set_yscale("log")
        ax.set_ylim(1e-9, 1e9)
        ax.set_xlabel("log r = log p_d/p_g   (r → 0: generated samples far from the data)")
        ax.axvline(0, color="0.8", lw=0.8, zorder=0)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if ax is ax_l else "upper left", ncol=1)
    ax_f.set_ylabel("w(r):  velocity = w(r) (s_d − s_g)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "figures" / "weights.png")
    print(make_figure(parser.parse_args().out))


if __name__ == "__main__":
    main()
