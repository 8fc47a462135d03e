"""Figures written to run directories: samples over the target (with the field that moves them), and
training curves.

Nothing is hidden silently: non-finite samples are counted in the title, samples far outside the target
are drawn clamped to the border of the window with their count, and the curves put losses, distances,
fractions and counts on separate labelled axes.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field as dc_field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

#: what ``loss_d`` is, per trainer, where its value is not obviously a distance or a probability
LOSS_D_NOTES: dict[str, str] = {
    "nsgan": "loss_d = BCE − log 4: 0 when D cannot tell, down to −log 4 ≈ −1.39 (negative is normal)",
    "sgan": "loss_d = BCE − log 4: 0 when D cannot tell, down to −log 4 ≈ −1.39 (negative is normal)",
    "fgan": "loss_d = −(variational bound of D_f): ≤ 0 once D beats chance, ≈ −D_f at the optimum",
    "lsgan": "loss_d = ½E(D(x) − 1)² + ½E D(G(z))² ≥ 0",
    "hinge": "loss_d = E relu(1 − D(x)) + E relu(1 + D(G(z))) ≥ 0",
    "wgan-gp": "loss_d = E D(fake) − E D(real) + λ·gp ≈ −W1 (negative is normal)",
    "mmd-gan": "loss_d = −MMD²(φ(real), φ(fake)) + λ·gp (negative is normal)",
}
_LOSS_D_GENERIC = "loss_d: the discriminator's loss (f-GANs: the negated bound, e.g. nsgan BCE − log 4, can be < 0)"

#: evaluation metrics by kind: counts and fractions get their own axes, the rest are distances
COUNT_METRICS = ("modes_covered", "nonfinite_samples")
FRACTION_METRICS = ("hq_fraction",)
_NOT_PLOTTED = ("n_modes", "mmd2_bandwidth")  # n_modes is drawn as the ceiling of modes_covered


def save_figure(fig: plt.Figure, path: str | Path, *, dpi: int = 110, close: bool = True, **kwargs) -> Path:
    """Write ``fig`` to ``path`` (parent folders created), close it unless ``close=False``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, **kwargs)
    if close:
        plt.close(fig)
    return path


def project_2d(x: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    """x (N, d) in the plane of ``basis`` (3, d) from :func:`pca_basis`, (N, 2); x itself when None."""
    return x if basis is None else (x - basis[0]) @ basis[1:].T


def pca_basis(ref: torch.Tensor) -> torch.Tensor | None:
    """(3, d): the mean and the top-2 principal directions of ``ref`` (None in 2-D)."""
    if ref.shape[1] == 2:
        return None
    mean = ref.mean(0)
    _, _, v = torch.linalg.svd(ref - mean, full_matrices=False)
    return torch.cat([mean[None], v[:2]], dim=0)


def finite_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The rows of x (N, d) without NaN or infinity, and how many were dropped."""
    keep = torch.isfinite(x).all(dim=1)
    return x[keep], int((~keep).sum())


def _box(x: torch.Tensor, q: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The [q, 1 − q] quantile box of x (N, 2) and its widest side (at least 1e-3)."""
    lo, hi = x.quantile(q, dim=0), x.quantile(1 - q, dim=0)
    return lo, hi, float((hi - lo).max().clamp_min(1e-3))


def plot_window(r: torch.Tensor, s: torch.Tensor | None = None, margin: float = 0.5,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(box_lo, box_hi, win_lo, win_hi), each (2,), for projected target points r (M, 2) and finite
    generated points s (N, 2): the target's box (its extent, padded by 10 % of its widest side), always
    shown; and the window beyond which generated points are clamped: the union of the target's extent
    and the generated 1–99 % quantile box, each widened by ``margin`` × its widest side (so a wide
    generator is drawn as it is, and only its far outliers are clamped)."""
    lo = torch.minimum(r.quantile(0.001, dim=0), r.min(0).values)
    hi = torch.maximum(r.quantile(0.999, dim=0), r.max(0).values)
    span = float((hi - lo).max().clamp_min(1e-3))
    w_lo, w_hi = lo - margin * span, hi + margin * span
    if s is not None and len(s):
        g_lo, g_hi, g_span = _box(s, 0.01)
        w_lo, w_hi = torch.minimum(w_lo, g_lo - margin * g_span), torch.maximum(w_hi, g_hi + margin * g_span)
    return lo - 0.1 * span, hi + 0.1 * span, w_lo, w_hi


def clamp_to_window(s: torch.Tensor, w_lo: torch.Tensor, w_hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s (N, 2) clamped into the box [w_lo, w_hi], and the (N,) mask of the rows that were outside it."""
    outside = ((s < w_lo) | (s > w_hi)).any(dim=1)
    return torch.maximum(torch.minimum(s, w_hi), w_lo), outside


@dataclass
class SamplesInfo:
    """What :func:`samples_figure` drew: samples drawn in place, clamped to the border, not drawn
    (non-finite), and the field's label (None when no field was drawn); ``notes`` are the title's notes."""

    drawn: int
    clamped: int
    nonfinite: int
    field: str | None = None
    notes: list[str] = dc_field(default_factory=list)


def draw_field(ax: plt.Axes, field: Callable[[torch.Tensor], torch.Tensor], label: str, *, grid: int = 21,
               color: str = "tab:blue") -> Line2D | None:
    """Arrows of v(x), (G², 2) → (G², 2), on a grid × grid lattice over ``ax``'s limits, under the points.

    An arrow's length is |v| / (95th percentile of |v| on the grid), capped at 1, times 0.9 cell: the
    direction everywhere, the magnitude relative to the field's typical size. Returns a legend handle
    (None when the field is zero or not finite everywhere)."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    gx = torch.linspace(x0, x1, grid + 2, dtype=torch.float64)[1:-1]
    gy = torch.linspace(y0, y1, grid + 2, dtype=torch.float64)[1:-1]
    X, Y = torch.meshgrid(gx, gy, indexing="xy")
    pts = torch.stack([X.reshape(-1), Y.reshape(-1)], dim=1)
    with torch.no_grad():
        v = field(pts).detach().to("cpu", torch.float64)
    if v.shape != pts.shape:
        raise ValueError(f"field must map (N, 2) to (N, 2), got {tuple(pts.shape)} -> {tuple(v.shape)}")
    ok = torch.isfinite(v).all(dim=1)
    mag = v.norm(dim=1)
    if not ok.any() or float(mag[ok].max()) == 0.0:
        return None
    scale = float(mag[ok].quantile(0.95).clamp_min(1e-300))
    cell = min((x1 - x0), (y1 - y0)) / (grid + 1)
    length = (mag / scale).clamp(max=1.0) * 0.9 * cell
    u = torch.where(ok[:, None], v / mag.clamp_min(1e-300)[:, None] * length[:, None], torch.zeros_like(v))
    ax.quiver(pts[:, 0].numpy(), pts[:, 1].numpy(), u[:, 0].numpy(), u[:, 1].numpy(), color=color, alpha=0.55,
              angles="xy", scale_units="xy", scale=1.0, pivot="mid", width=0.0025, headwidth=4, zorder=1)
    return Line2D([], [], color=color, alpha=0.7, marker=r"$\rightarrow$", ls="", markersize=6,
                  label=f"{label} (length ∝ |v| ≤ {scale:.2g})")


def image_grid(images: torch.Tensor, image_shape: tuple[int, ...], nrow: int | None = None,
               pad: int = 1, background: float = 0.0, outer: bool = False) -> np.ndarray:
    """Images in [-1, 1] (clipped; NaN drawn as −1), flat (N, C·H·W) or (N, C, H, W) with ``image_shape``
    (C, H, W) or (H, W), tiled ``nrow`` per row (default ⌈√N⌉) with ``pad`` pixels of ``background``
    (in [0, 1]) between them, and around them too with ``outer``: a float array in [0, 1] of shape
    (H', W') for one channel, (H', W', 3) for three."""
    shape = tuple(image_shape) if len(image_shape) == 3 else (1, *image_shape)
    c, h, w = shape
    x = images.detach().to("cpu", torch.float64).reshape(-1, c, h, w)
    x = (x.nan_to_num(-1.0).clamp(-1.0, 1.0) + 1.0) / 2.0
    n = x.shape[0]
    cols = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = max(1, int(math.ceil(n / cols)))
    o = pad if outer else 0
    grid = torch.full((c, rows * (h + pad) - pad + 2 * o, cols * (w + pad) - pad + 2 * o), background, dtype=torch.float64)
    for i in range(n):
        a, b = divmod(i, cols)
        grid[:, o + a * (h + pad):o + a * (h + pad) + h, o + b * (w + pad):o + b * (w + pad) + w] = x[i]
    return grid[0].numpy() if c == 1 else grid.permute(1, 2, 0).numpy()


def save_image_grid(images: torch.Tensor, path: str | Path, image_shape: tuple[int, ...], *,
                    nrow: int | None = None) -> Path:
    """:func:`image_grid` with a 1-px gray border around and between the images, as an 8-bit PNG of
    (rows·(H+1)+1) × (nrow·(W+1)+1) pixels (pixel = round((x + 1)·127.5)). Returns the path."""
    from PIL import Image  # Pillow: a dependency of matplotlib

    grid = image_grid(images, image_shape, nrow=nrow, pad=1, background=128 / 255, outer=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(grid * 255.0).astype(np.uint8)).save(path, format="PNG")
    return path


def samples_figure(samples: torch.Tensor, reference: torch.Tensor, *, title: str = "",
                   means: torch.Tensor | None = None, image_shape: tuple[int, ...] | None = None,
                   field: Callable[[torch.Tensor], torch.Tensor] | None = None, field_label: str | None = None,
                   margin: float = 0.5) -> tuple[plt.Figure, SamplesInfo]:
    """The figure of :func:`plot_samples` (not saved) and what it drew (:class:`SamplesInfo`)."""
    samples, reference = samples.detach().double().cpu(), reference.detach().double().cpu()
    samples, nonfinite = finite_rows(samples)
    reference, _ = finite_rows(reference)
    ncols = 2 if image_shape else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.4 * ncols, 6.0), squeeze=False)
    ax = axes[0, 0]
    basis = pca_basis(reference)
    r, s = project_2d(reference, basis), project_2d(samples, basis)
    box_lo, box_hi, w_lo, w_hi = plot_window(r, s, margin)
    s_in, outside = clamp_to_window(s, w_lo, w_hi)
    lo = torch.minimum(box_lo, s_in.min(0).values) if len(s_in) else box_lo
    hi = torch.maximum(box_hi, s_in.max(0).values) if len(s_in) else box_hi
    pad = 0.03 * (hi - lo)
    ax.set_xlim((lo[0] - pad[0]).item(), (hi[0] + pad[0]).item())
    ax.set_ylim((lo[1] - pad[1]).item(), (hi[1] + pad[1]).item())
    handles = []
    info = SamplesInfo(drawn=int((~outside).sum()), clamped=int(outside.sum()), nonfinite=nonfinite)
    if field is not None:
        label = field_label or getattr(field, "label", None) or "velocity"
        if basis is None:
            h = draw_field(ax, field, label)
            if h is not None:
                handles.append(h)
                info.field = label
        else:
            info.notes.append(f"{label} not drawn (d = {reference.shape[1]} > 2)")
    handles.append(ax.scatter(r[:, 0], r[:, 1], s=3, c="0.6", alpha=0.5, label="target", rasterized=True, zorder=2))
    ins = s_in[~outside]
    handles.append(ax.scatter(ins[:, 0], ins[:, 1], s=3, c="tab:orange", alpha=0.6, label="generated",
                              rasterized=True, zorder=3))
    if means is not None:
        m = project_2d(means.detach().double().cpu(), basis)
        handles.append(ax.scatter(m[:, 0], m[:, 1], marker="o", facecolors="none", edgecolors="k", s=22,
                                  linewidths=0.5, alpha=0.7, label="modes", zorder=4))
    if info.clamped:
        c = s_in[outside]
        msg = f"{info.clamped} generated outside the window, clamped to its border"
        handles.append(ax.scatter(c[:, 0], c[:, 1], marker="D", s=12, c="tab:red", alpha=0.8, label=msg,
                                  zorder=5, clip_on=False))
        info.notes.append(f"{info.clamped} clamped to the border")
    if nonfinite:
        info.notes.insert(0, f"{nonfinite} non-finite samples not drawn")
    ax.set_aspect("equal", adjustable="box")
    ax.set_title((title or "samples") + ("\n" + "; ".join(info.notes) if info.notes else ""), fontsize=10)
    if basis is not None:
        ax.set_xlabel("PC 1 of target")
        ax.set_ylabel("PC 2 of target")
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.07 if basis is None else -0.12),
              ncol=2, fontsize=7, markerscale=2, frameon=False)
    if image_shape:
        grid = image_grid(samples[:64], image_shape)
        axes[0, 1].imshow(grid, cmap="gray_r" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0)
        axes[0, 1].axis("off")
        axes[0, 1].set_title("generated images" + (" (finite ones)" if nonfinite else ""))
    fig.tight_layout()
    return fig, info


def plot_samples(samples: torch.Tensor, reference: torch.Tensor, path: str | Path, *, title: str = "",
                 means: torch.Tensor | None = None, image_shape: tuple[int, ...] | None = None,
                 field: Callable[[torch.Tensor], torch.Tensor] | None = None, field_label: str | None = None) -> Path:
    """Generated samples (orange) over target samples (grey); mixture means as small open circles.

    2-D data are drawn as they are; higher dimensions on the target's top-2 principal plane; image data
    (``image_shape``) also as a grid of the first 64 finite samples. The axes cover the target and the
    generated points; far outliers (beyond :func:`plot_window`: the target's and the generated bulk's
    boxes, each widened by half its widest side) are drawn as red diamonds clamped to that border, their
    count in the legend and title. Non-finite rows are dropped,
    their count in the title. ``field``: v(x), (N, 2) → (N, 2) (2-D data only), drawn as arrows under the
    points, labelled ``field_label`` or the field's ``label`` attribute ("velocity" by default).
    """
    fig, _ = samples_figure(samples, reference, title=title, means=means, image_shape=image_shape,
                            field=field, field_label=field_label)
    return save_figure(fig, path)


def _series(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]


def _numeric_keys(rows: list[dict], skip: tuple[str, ...] = ()) -> list[str]:
    return sorted({k for r in rows for k, v in r.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in {"step", *skip}})


def is_loss(key: str) -> bool:
    """A training log entry that is a loss (``loss_*`` or ``*_loss``)."""
    return key.startswith("loss") or key.endswith("_loss")


def curves_figure(rows: list[dict], *, title: str = "", trainer: str | None = None) -> plt.Figure:
    """The figure of :func:`plot_curves` (not saved)."""
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    tkeys = _numeric_keys(train)
    ekeys = _numeric_keys(evals, _NOT_PLOTTED)
    counts = [k for k in ekeys if k in COUNT_METRICS]
    fractions = [k for k in ekeys if k in FRACTION_METRICS or k.endswith("_fraction")]
    panels: list[tuple[str, str, list[dict], list[str]]] = [
        ("training losses", "loss", train, [k for k in tkeys if is_loss(k)]),
        ("other training statistics", "value", train, [k for k in tkeys if not is_loss(k)]),
        ("distances to the target", "distance (symlog)", evals, [k for k in ekeys if k not in {*counts, *fractions}]),
        ("fractions", "fraction of samples", evals, fractions),
        ("counts", "count", evals, counts),
    ]
    panels = [p for i, p in enumerate(panels) if p[3] or i == 0]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (name, ylabel, data, keys) in zip(axes.flat, panels):
        for k in keys:
            pts = _series(data, k)
            label = k
            if k == "loss_d":
                label = textwrap.fill(LOSS_D_NOTES.get(trainer or "", _LOSS_D_GENERIC), 60)
            if pts:
                ax.plot(*zip(*pts), label=label, marker="o" if data is evals else None, ms=3)
        if name == "counts":
            n_modes = [r["n_modes"] for r in evals if isinstance(r.get("n_modes"), (int, float))]
            if n_modes and "modes_covered" in keys:
                ax.axhline(max(n_modes), ls="--", c="0.4", lw=0.8, label=f"n_modes = {max(n_modes)}")
            top = max([v for k in keys for _, v in _series(evals, k)] + n_modes + [1])
            ax.set_ylim(-0.04 * top - 0.3, 1.04 * top + 0.3)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if name == "fractions":
            ax.set_ylim(-0.03, 1.03)
        if name.startswith("distances"):
            ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if name == "training losses" and "loss_d" in keys:  # the long note of loss_d goes under the axes
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
        elif ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(rows: list[dict], path: str | Path, *, title: str = "", trainer: str | None = None) -> Path:
    """Training curves against the step, each kind on its own labelled axes: losses (with what
    ``loss_d`` is for ``trainer``), other training statistics, distances to the target (symlog),
    fractions (0–1) and counts (modes covered under the number of modes; non-finite samples)."""
    return save_figure(curves_figure(rows, title=title, trainer=trainer), path)
