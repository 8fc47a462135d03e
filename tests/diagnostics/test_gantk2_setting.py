"""recipes/ntk_gan.py --setting gantk2: GAN(TK)²'s draw and a short flow through the library's particle_flow."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import load_recipe


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("ntk_gan")


def test_the_draw_is_gantk2s_targets_first_then_the_particles(recipe):
    target, start = recipe.gantk2_problem()
    assert target.shape == start.shape == (500, 2) and target.dtype == torch.float32
    radius = target.norm(dim=1)
    assert abs(radius.mean().item() - 5.0) < 0.1  # 8 modes on the circle of radius 5, std 0.5
    assert abs(start.std().item() - 1.0) < 0.1
    torch.manual_seed(1)
    torch.randint(0, 8, (500,))
    torch.randn(500, 2)
    assert torch.equal(torch.randn(500, 2), start)  # the particles are the next draw of the same stream


@pytest.mark.parametrize("name", ["relu+bias", "relu", "gaussian"])
def test_a_short_run_reports_w2_timing_and_the_matched_distances(recipe, name):
    r = recipe.gantk2_run(name, 4, "float32", record_every=2, threads=1)
    assert sorted(r["curve"]) == [0, 2, 4] and r["iterations"] == 4
    assert all(math.isfinite(v) for v in r["curve"].values())
    assert r["curve"][4] < r["curve"][0]  # the particles move toward the targets
    assert r["ms_per_iteration"] > 0 and 0 <= r["final_matched_distance"]["fraction_below_1e-3"] <= 1
