"""Figures (scoregan.plotting, scoregan.sampling.plots, the bench grid, the loop's figures): they draw the
velocity field, count what they cannot draw in place instead of hiding it, and keep each run's final figure."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest
import torch

from scoregan.checkpoint import load_checkpoint
from scoregan.config import load_config
from scoregan.data import make_dataset
from scoregan.experiment import bench_results
from scoregan.experiment.callbacks import StopAtStep
from scoregan.experiment.evaluation import evaluate_generator
from scoregan.experiment.loop import Trainer
from scoregan.plotting import (
    curves_figure,
    plot_curves,
    plot_samples,
    plot_window,
    samples_figure,
)
from scoregan.sampling.plots import plot_before_after
from tests.helpers import FAST

F64 = torch.float64


def _two_blobs(n: int = 400, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randn(n, 2, generator=g, dtype=F64) * 0.05 + 1,
                      torch.randn(n, 2, generator=g, dtype=F64) * 0.05 - 1])


def _bad_samples() -> torch.Tensor:
    """300 samples near the target with 4 NaN rows, 1 infinite row and 3 far outliers."""
    s = torch.randn(300, 2, generator=torch.Generator().manual_seed(1), dtype=F64) * 0.5
    s[:4, 0] = float("nan")
    s[4, 1] = float("inf")
    s[5:8] = torch.tensor([40.0, -3.0], dtype=F64)
    return s


def test_samples_figure_counts_nonfinite_and_clamped_samples_and_draws_the_field(tmp_path):
    calls = []

    def field(x):
        calls.append(x.shape)
        return -x

    field.label = "∇D̂: witness gradient"
    fig, info = samples_figure(_bad_samples(), _two_blobs(), title="run", field=field,
                               means=torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
    ax = fig.axes[0]
    assert (info.nonfinite, info.clamped, info.drawn) == (5, 3, 292)
    assert info.field == "∇D̂: witness gradient" and calls and calls[0][1] == 2
    assert "5 non-finite samples not drawn" in ax.get_title() and "3 clamped" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lab.startswith("∇D̂: witness gradient") for lab in labels)
    assert any("3 generated outside the window" in lab for lab in labels)
    assert len(ax.collections) >= 4  # quiver, target, generated, modes, clamped
    # the axes cover every drawn generated point, clamped ones included
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    pts = torch.cat([torch.as_tensor(c.get_offsets(), dtype=F64) for c in ax.collections[1:]])
    assert (pts[:, 0] >= x0).all() and (pts[:, 0] <= x1).all() and (pts[:, 1] >= y0).all() and (pts[:, 1] <= y1).all()
    plt.close(fig)
    path = plot_samples(_bad_samples(), _two_blobs(), tmp_path / "f" / "s.png", field=field)
    assert path.is_file() and path.stat().st_size > 1000


def test_samples_figure_without_problems_has_no_notes_and_a_wide_generator_is_not_clamped():
    wide = torch.randn(500, 2, generator=torch.Generator().manual_seed(2), dtype=F64) * 3
    fig, info = samples_figure(wide, _two_blobs(), title="clean")
    assert (info.nonfinite, info.clamped, info.drawn, info.notes) == (0, 0, 500, [])
    assert fig.axes[0].get_title() == "clean"
    plt.close(fig)
    box_lo, box_hi, w_lo, w_hi = plot_window(_two_blobs())
    assert (w_lo < box_lo).all() and (w_hi > box_hi).all()


def test_field_is_not_drawn_in_higher_dimensions():
    g = torch.Generator().manual_seed(0)
    fig, info = samples_figure(torch.randn(50, 5, generator=g), torch.randn(80, 5, generator=g), field=lambda x: x)
    assert info.field is None and "not drawn (d = 5 > 2)" in fig.axes[0].get_title()
    plt.close(fig)


def test_evaluate_generator_returns_non_finite_samples_as_drawn():
    data = load_config(None, FAST).data

    def sampler(n, g):
        x = torch.randn(n, 2, generator=g)
        x[:3] = float("nan")
        return x

    metrics, samples, _ = evaluate_generator(sampler, make_dataset(data), n=50, seed=0)
    assert metrics == {"nonfinite_samples": 3}
    assert torch.isnan(samples[:3]).all() and torch.isfinite(samples[3:]).all()


def _rows():
    rows = [{"step": s, "kind": "train", "loss_d": -0.5, "loss_g": 1.0, "gp": 0.1, "velocity": 0.02} for s in (1, 2, 3)]
    rows += [{"step": s, "kind": "eval", "w2": 1.0 / s, "mmd2": 1e-3, "sliced_w2": 0.5, "modes_covered": 5 + s,
              "n_modes": 8, "hq_fraction": 0.2 * s, "mmd2_bandwidth": 1.0} for s in (1, 2, 3)]
    return rows + [{"step": 4, "kind": "eval", "nonfinite_samples": 7}]


def test_curves_put_losses_distances_fractions_and_counts_on_separate_labelled_axes(tmp_path):
    fig = curves_figure(_rows(), title="t", trainer="nsgan")
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert set(axes) == {"training losses", "other training statistics", "distances to the target", "fractions",
                         "counts"}
    ylabels = {t: ax.get_ylabel() for t, ax in axes.items()}
    assert ylabels == {"training losses": "loss", "other training statistics": "value",
                       "distances to the target": "distance (symlog)", "fractions": "fraction of samples",
                       "counts": "count"}

    def legend(t):
        return [x.get_text() for x in axes[t].get_legend().get_texts()]

    losses = legend("training losses")
    assert len(losses) == 2 and losses[1] == "loss_g" and "BCE − log 4" in losses[0] and "negative" in losses[0]
    assert legend("other training statistics") == ["gp", "velocity"]
    assert legend("distances to the target") == ["mmd2", "sliced_w2", "w2"]
    assert legend("fractions") == ["hq_fraction"]
    assert legend("counts") == ["modes_covered", "nonfinite_samples", "n_modes = 8"]
    assert axes["fractions"].get_ylim()[1] <= 1.1
    plt.close(fig)
    generic = curves_figure(_rows())
    assert any("can be < 0" in x.get_text() for x in generic.axes[0].get_legend().get_texts())
    plt.close(generic)
    assert plot_curves(_rows(), tmp_path / "c.png").is_file()


def test_before_after_counts_what_it_cannot_draw_in_place(tmp_path):
    fig = plot_before_after(_bad_samples(), _two_blobs()[:300], _two_blobs(), tmp_path / "ba.png",
                            means=torch.tensor([[1.0, 1.0]]))
    titles = [ax.get_title() for ax in fig.axes]
    assert "5 non-finite samples not drawn" in titles[0] and "3 clamped" in titles[0]
    assert titles[1] == "guided Langevin"
    assert (tmp_path / "ba.png").is_file()


def test_bench_grid_has_a_legend_and_each_panels_w2_and_modes(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(bench_results, "save_figure", lambda fig, path, **kw: seen.setdefault("fig", fig) and path)
    ref = _two_blobs(100).tolist()
    far = _two_blobs(100).tolist()
    far[0] = [50.0, 0.0]
    far[1] = [math.nan, 0.0]
    payload = {"rows": [{"target": "8gaussians", "trainer": "nsgan", "seed": 0, "w2_draws": [0.25, 0.35],
                         "modes_covered": 7, "n_modes": 8},
                        {"target": "8gaussians", "trainer": "wgan-gp", "seed": 0, "w2_draws": None}],
               "samples": {"8gaussians/nsgan": far, "8gaussians/wgan-gp": [[0.0, 0.0]] * 10},
               "reference": {"8gaussians": ref}}
    bench_results.plot_grid(payload, ["8gaussians"], ["nsgan", "wgan-gp"], tmp_path / "g.png")
    fig = seen["fig"]
    top, bottom = fig.axes[0].get_title(), fig.axes[1].get_title()
    assert "W2 0.300" in top and "modes 7 of 8" in top and "1 clamped" in top and "1 non-finite" in top
    assert "diverged 1/1" in bottom and "not drawn" in bottom
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == ["target", "samples"]
    plt.close(fig)


def _cfg(name, *extra):
    return load_config(None, [f"trainer.name={name}", *FAST, "train.steps=6", "train.checkpoint_every=3",
                              "train.eval_every=3", "train.log_every=1", *extra])


def test_a_resumed_run_keeps_the_earlier_final_figure(tmp_path):
    cfg = _cfg("kernel-flow", "eval.figures=true")
    first = Trainer(cfg, tmp_path / "run", callbacks=[StopAtStep(3)]).fit()
    assert first.step == 3
    figures = tmp_path / "run" / "figures"
    earlier = (figures / "samples_final_step0000003.png").read_bytes()
    assert (figures / "samples_final.png").read_bytes() == earlier
    Trainer(cfg, tmp_path / "run", resume=True).fit()
    assert (figures / "samples_final_step0000003.png").read_bytes() == earlier
    assert (figures / "samples_final.png").read_bytes() == (figures / "samples_final_step0000006.png").read_bytes()


@pytest.mark.parametrize("name", ["kernel-flow", "nsgan"])
def test_the_figures_field_does_not_perturb_training(tmp_path, name):
    """A run writing figures (with the velocity field) ends bit-identical to one writing none."""
    Trainer(_cfg(name, "eval.figures=true"), tmp_path / "with").fit()
    Trainer(_cfg(name, "eval.figures=false"), tmp_path / "without").fit()
    assert (tmp_path / "with" / "figures" / "samples_final_step0000006.png").is_file()
    a = load_checkpoint(tmp_path / "with/checkpoints/last.pt")["rule"]["modules"]
    b = load_checkpoint(tmp_path / "without/checkpoints/last.pt")["rule"]["modules"]
    for net in a:
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), (net, k)
