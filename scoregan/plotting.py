"""Figures written to run directories: samples over the target, and training curves."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


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


def plot_samples(samples: torch.Tensor, reference: torch.Tensor, path: str | Path, *, title: str = "",
                 means: torch.Tensor | None = None, image_shape: tuple[int, int] | None = None) -> Path:
    """Generated samples (orange) over target samples (grey); mixture means as crosses.

    2-D data are drawn as they are; higher dimensions on the target's top-2 principal plane;
    image data (``image_shape``) as a grid of the first 64 samples beside the scatter.
    """
    samples, reference = samples.detach().double().cpu(), reference.detach().double().cpu()
    ncols = 2 if image_shape else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 5), squeeze=False)
    ax = axes[0, 0]
    basis = pca_basis(reference)
    r, s = project_2d(reference, basis), project_2d(samples, basis)
    ax.scatter(r[:, 0], r[:, 1], s=3, c="0.65", alpha=0.5, label="target", rasterized=True)
    ax.scatter(s[:, 0], s[:, 1], s=3, c="tab:orange", alpha=0.6, label="generated", rasterized=True)
    if means is not None:
        m = project_2d(means.detach().double().cpu(), basis)
        ax.scatter(m[:, 0], m[:, 1], marker="x", c="k", s=30, label="modes")
    lo = torch.minimum(r.quantile(0.001, dim=0), r.min(0).values) - 0.5
    hi = torch.maximum(r.quantile(0.999, dim=0), r.max(0).values) + 0.5
    ax.set_xlim(lo[0].item(), hi[0].item())
    ax.set_ylim(lo[1].item(), hi[1].item())
    ax.set_aspect("equal", adjustable="box")
    ax.set_title(title or "samples")
    if basis is not None:
        ax.set_xlabel("PC 1 of target")
        ax.set_ylabel("PC 2 of target")
    ax.legend(loc="upper right", fontsize=8, markerscale=3)
    if image_shape:
        h, w = image_shape
        k = min(64, samples.shape[0])
        cols = int(math.ceil(math.sqrt(k)))
        grid = torch.ones(cols * (h + 1), cols * (w + 1))
        for i in range(k):
            a, b = divmod(i, cols)
            grid[a * (h + 1):a * (h + 1) + h, b * (w + 1):b * (w + 1) + w] = samples[i].reshape(h, w)
        axes[0, 1].imshow(grid.numpy(), cmap="gray_r")
        axes[0, 1].axis("off")
        axes[0, 1].set_title("generated images")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_curves(rows: list[dict], path: str | Path, *, title: str = "") -> Path:
    """Training losses (left) and evaluation metrics (right) against the step."""
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, data, skip in ((axes[0], train, set()), (axes[1], evals, {"n_modes", "mmd2_bandwidth"})):
        keys = sorted({k for r in data for k, v in r.items() if isinstance(v, (int, float)) and k not in {"step", *skip}})
        for k in keys:
            pts = [(r["step"], r[k]) for r in data if isinstance(r.get(k), (int, float))]
            if pts:
                ax.plot(*zip(*pts), label=k, marker="o" if data is evals else None, ms=3)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_title("training losses")
    axes[1].set_title("evaluation")
    if evals:
        axes[1].set_yscale("symlog", linthresh=1e-3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
