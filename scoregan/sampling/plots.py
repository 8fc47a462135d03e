"""Figures for guided sampling: particles over the guidance field ∇ψ (2-D only).

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend change), so it
works headless and inside other figures (pass ``ax``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from scoregan._checks import check_int, check_matrix
from scoregan.plotting import clamp_to_window, finite_rows, image_grid, pca_basis, plot_window, project_2d

__all__ = ["plot_guidance_field", "plot_before_after"]


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def plot_guidance_field(
    particles: torch.Tensor,
    guidance: Any,
    *,
    reference: torch.Tensor | None = None,
    trajectory: torch.Tensor | None = None,
    ax: Any = None,
    path: str | Path | None = None,
    grid: int = 25,
    max_trajectories: int = 64,
    title: str | None = None,
):
    """Draw the particles (N, 2) over the guidance field ∇ψ on a grid, with optional trajectories.

    Args:
        particles: (N, 2) current particles; for an ensemble-dependent field (``KernelGuidance``)
            the field is the one they induce (``guidance.bind(particles)``).
        guidance: an object with ``grad(x) -> (N, 2)`` (see :mod:`scoregan.sampling.guidance`).
        reference: optional (M, 2) data drawn underneath.
        trajectory: optional (T, N, 2) states (``info.trajectory`` of ``langevin(..., return_trajectory=True)``);
            at most ``max_trajectories`` particle paths are drawn.
        ax: a matplotlib Axes to draw into; a new Agg figure when None.
        path: save the figure there as PNG when given.
        grid: arrows per axis.

    Arrows show the direction of ∇ψ (unit length), colour its magnitude |∇ψ|. Non-finite particles
    are dropped (their count in the title), as are the paths of particles that ever become non-finite;
    the axes cover every drawn point.

    Returns:
        the matplotlib Figure.
    """
    check_matrix("particles", particles)
    if particles.shape[1] != 2:
        raise ValueError(f"plot_guidance_field draws 2-D fields, but particles have dimension {particles.shape[1]} "
                         f"(shape {tuple(particles.shape)}); project to 2-D first")
    if not callable(getattr(guidance, "grad", None)):
        raise ValueError(f"guidance must provide grad(x) -> (N, 2), got {type(guidance).__name__}")
    if reference is not None:
        check_matrix("reference", reference, dim=2)
    if trajectory is not None:
        if not isinstance(trajectory, torch.Tensor) or trajectory.ndim != 3 or trajectory.shape[2] != 2:
            shape = tuple(trajectory.shape) if isinstance(trajectory, torch.Tensor) else type(trajectory).__name__
            raise ValueError(f"trajectory must have shape (T, N, 2), got {shape}")
    check_int("grid", grid, minimum=2)
    check_int("max_trajectories", max_trajectories, minimum=0)

    particles, bad = finite_rows(particles.detach())
    if not len(particles):
        raise ValueError(f"all {bad} particles are non-finite: nothing to draw")
    if trajectory is not None:
        trajectory = trajectory[:, torch.isfinite(trajectory).all(dim=2).all(dim=0)]
    pts = [particles] + ([reference] if reference is not None else [])
    if trajectory is not None:
        pts.append(trajectory.reshape(-1, 2))
    allp = torch.cat([p.detach().to("cpu", torch.float64) for p in pts])
    lo, hi = allp.amin(0), allp.amax(0)
    pad = 0.1 * (hi - lo).clamp_min(1e-3)
    lo, hi = lo - pad, hi + pad

    x = particles.detach()
    gx = torch.linspace(float(lo[0]), float(hi[0]), grid, dtype=x.dtype, device=x.device)
    gy = torch.linspace(float(lo[1]), float(hi[1]), grid, dtype=x.dtype, device=x.device)
    X, Y = torch.meshgrid(gx, gy, indexing="xy")
    where = torch.stack([X.reshape(-1), Y.reshape(-1)], dim=1)
    bind = getattr(guidance, "bind", None)
    field = bind(x) if callable(bind) else guidance
    g = field.grad(where)
    if g.shape != where.shape:
        raise ValueError(f"guidance.grad returned shape {tuple(g.shape)} for a grid of shape {tuple(where.shape)}")
    g = _numpy(g)
    mag = np.linalg.norm(g, axis=1)
    unit = g / np.maximum(mag, 1e-12)[:, None]

    if ax is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 6))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
    fig = ax.figure

    q = ax.quiver(_numpy(X).reshape(-1), _numpy(Y).reshape(-1), unit[:, 0], unit[:, 1], mag,
                  cmap="viridis", angles="xy", pivot="mid", alpha=0.8, width=0.003,
                  scale_units="width", scale=1.6 * grid)  # an arrow spans ~60 % of a grid cell
    fig.colorbar(q, ax=ax, shrink=0.8, label="|∇ψ|")
    if reference is not None:
        r = _numpy(reference)
        ax.scatter(r[:, 0], r[:, 1], s=4, c="0.55", alpha=0.5, label="reference", zorder=2)
    if trajectory is not None and max_trajectories > 0:
        t = _numpy(trajectory[:, :max_trajectories])
        for i in range(t.shape[1]):
            ax.plot(t[:, i, 0], t[:, i, 1], lw=0.6, c="tab:orange", alpha=0.6, zorder=3)
    p = _numpy(x)
    ax.scatter(p[:, 0], p[:, 1], s=6, c="tab:red", label="particles", zorder=4)
    ax.set_xlim(float(lo[0]), float(hi[0]))
    ax.set_ylim(float(lo[1]), float(hi[1]))
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    note = f"{bad} non-finite particles not drawn" if bad else ""
    if title or note:
        ax.set_title("\n".join(t for t in (title, note) if t))
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def plot_before_after(
    before: torch.Tensor,
    after: torch.Tensor,
    reference: torch.Tensor,
    path: str | Path | None = None,
    *,
    means: torch.Tensor | None = None,
    titles: tuple[str, str] = ("generator", "guided Langevin"),
    suptitle: str = "",
    image_shape: tuple[int, ...] | None = None,
):
    """Two panels over the same target samples: ``before`` (N, d) and ``after`` (N, d) guidance.

    With ``image_shape`` (C, H, W) the panels are grids of the first 64 images before and after
    (the same latents, so the same cells), and a third panel shows reference images.

    2-D data are drawn as they are, higher dimensions on the target's top-2 principal plane;
    mixture ``means`` (K, d) as small open circles. The shared axes cover the target and both sets of
    points; far outliers (beyond :func:`scoregan.plotting.plot_window` of the target and both sets) are
    drawn as red diamonds clamped to that border, and non-finite rows are dropped, each count in the
    panel's title.
    Saves a PNG when ``path`` is given; returns the Figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    check_matrix("reference", reference)
    check_matrix("before", before, dim=reference.shape[1])
    check_matrix("after", after, dim=reference.shape[1])
    if image_shape is not None:
        return _before_after_grids(before, after, reference, path, titles, suptitle, tuple(image_shape))
    ref, _ = finite_rows(reference.detach().to("cpu", torch.float64))
    basis = pca_basis(ref)
    r = project_2d(ref, basis)
    finite = [finite_rows(pts.detach().to("cpu", torch.float64)) for pts in (before, after)]
    box_lo, box_hi, w_lo, w_hi = plot_window(r, torch.cat([project_2d(p, basis) for p, _ in finite]))
    panels = []
    lo, hi = box_lo, box_hi
    for p, bad in finite:
        p, outside = clamp_to_window(project_2d(p, basis), w_lo, w_hi)
        if len(p):
            lo, hi = torch.minimum(lo, p.min(0).values), torch.maximum(hi, p.max(0).values)
        panels.append((p, outside, bad))
    pad = 0.03 * (hi - lo)
    lo, hi = (lo - pad).numpy(), (hi + pad).numpy()
    fig = Figure(figsize=(10.4, 5.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    rn = r.numpy()
    for ax, (p, outside, bad), title in zip(axes, panels, titles):
        ax.scatter(rn[:, 0], rn[:, 1], s=3, c="0.6", alpha=0.5, label="target", rasterized=True, zorder=2)
        ins = p[~outside].numpy()
        ax.scatter(ins[:, 0], ins[:, 1], s=3, c="tab:orange", alpha=0.6, label="samples", rasterized=True, zorder=3)
        if means is not None:
            m = project_2d(means.detach().to("cpu", torch.float64), basis).numpy()
            ax.scatter(m[:, 0], m[:, 1], marker="o", facecolors="none", edgecolors="k", s=22, linewidths=0.5,
                       alpha=0.7, label="modes", zorder=4)
        notes = [f"{bad} non-finite samples not drawn"] if bad else []
        if outside.any():
            c = p[outside].numpy()
            ax.scatter(c[:, 0], c[:, 1], marker="D", s=12, c="tab:red", alpha=0.8, zorder=5,
                       label="outside the window, clamped to its border")
            notes.append(f"{int(outside.sum())} clamped to the border")
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(title + ("\n" + "; ".join(notes) if notes else ""), fontsize=10)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=7, markerscale=2, frameon=False)
        if basis is not None:
            ax.set_xlabel("PC 1 of target")
    return _finish(fig, path, suptitle)


def _before_after_grids(before: torch.Tensor, after: torch.Tensor, reference: torch.Tensor, path: str | Path | None,
                        titles: tuple[str, str], suptitle: str, image_shape: tuple[int, ...]):
    """:func:`plot_before_after` for images: three grids of up to 64 images (before, after, reference)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12.0, 4.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, pts, title in zip(axes, (before, after, reference), (*titles, "data")):
        grid = image_grid(pts[:64], image_shape, background=0.5, outer=True)
        ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    return _finish(fig, path, suptitle)


def _finish(fig: Any, path: str | Path | None, suptitle: str) -> Any:
    """Title, tight layout and (when ``path`` is given) a PNG at 110 dpi; returns the Figure."""
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
