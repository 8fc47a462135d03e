"""Known answers for scoregan.metrics: hand-computed cases, closed forms, float64 references."""

from __future__ import annotations

import itertools
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist, pdist
from scipy.special import gamma as gamma_fn
from scipy.stats import chi2, ncx2, norm

import scoregan.metrics._common as common
from scoregan.metrics import (
    MODE_REPORT_KEYS,
    TOY_REPORT_KEYS,
    energy_distance,
    frechet_distance,
    gaussian_frechet_distance,
    hq_probability,
    hq_radius,
    kid,
    median_heuristic,
    mmd2,
    mode_stats,
    optimal_matching,
    precision_recall,
    sliced_w2,
    toy_report,
    w2,
)
from scoregan.objectives import kernels
from scoregan.scores import GaussianMixture
from tests.helpers import gen

F64 = torch.float64




def ring(k: int = 8, radius: float = 2.0, std: float | list[float] = 0.05, weights=None) -> GaussianMixture:
    ang = torch.arange(k, dtype=F64) * (2 * math.pi / k)
    means = radius * torch.stack([ang.cos(), ang.sin()], dim=1)
    return GaussianMixture(means, torch.as_tensor(std, dtype=F64), weights)


def mean_and_se(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))


# ------------------------------------------------------------------------------------------ W2


def test_w2_hand_computed_matching_is_not_the_identity():
    # a = {(0,0), (2,0)}, b = {(2,1), (0,1)}.
    # identity: ‖(0,0)−(2,1)‖² = 5 and ‖(2,0)−(0,1)‖² = 5 → mean 5;
    # swapped:  ‖(0,0)−(0,1)‖² = 1 and ‖(2,0)−(2,1)‖² = 1 → mean 1, so W2 = sqrt(1) = 1.
    a = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    b = torch.tensor([[2.0, 1.0], [0.0, 1.0]])
    assert w2(a, b) == pytest.approx(1.0, abs=1e-14)
    assert optimal_matching(a, b).tolist() == [1, 0]


def test_w2_equals_brute_force_over_all_permutations():
    rng = np.random.default_rng(0)
    for d in (1, 2, 3):
        a, b = rng.normal(size=(6, d)), rng.normal(size=(6, d)) * 1.7 + 0.3
        cost = cdist(a, b, "sqeuclidean")
        best = min(cost[np.arange(6), list(p)].mean() for p in itertools.permutations(range(6)))
        assert w2(a, b) == pytest.approx(math.sqrt(best), rel=1e-12)


def test_w2_of_a_translate_is_the_shift_norm():
    g = gen(1)
    a = torch.randn(300, 3, generator=g, dtype=F64)
    v = torch.tensor([0.7, -1.2, 2.5], dtype=F64)
    b = (a + v)[torch.randperm(300, generator=g)]  # shuffled, so the matching has to be found
    assert w2(a, b) == pytest.approx(float(v.norm()), rel=1e-12)


def test_w2_is_symmetric_and_zero_on_a_permutation():
    g = gen(2)
    a, b = torch.randn(200, 2, generator=g), 2 * torch.randn(200, 2, generator=g) + 1
    assert w2(a, b) == pytest.approx(w2(b, a), rel=1e-12)
    assert w2(a, a[torch.randperm(200, generator=g)]) == pytest.approx(0.0, abs=1e-12)


def test_w2_in_one_dimension_is_the_sorted_matching():
    g = gen(3)
    a, b = torch.randn(500, 1, generator=g, dtype=F64), torch.rand(500, 1, generator=g, dtype=F64) * 3
    sorted_value = math.sqrt(float(((a.sort(0).values - b.sort(0).values) ** 2).mean()))
    assert w2(a, b) == pytest.approx(sorted_value, rel=1e-12)


@pytest.mark.parametrize("case", ["scaled", "mixture_vs_blob", "degenerate", "high_dim"])
def test_w2_speedups_keep_the_exact_optimum(case):
    """Centring and the Gaussian potentials must not change the optimal cost (plain LSA reference)."""
    g = gen(4)
    n = 300
    if case == "scaled":
        a, b = torch.randn(n, 2, generator=g, dtype=F64), 3 * torch.randn(n, 2, generator=g, dtype=F64) + 5
    elif case == "mixture_vs_blob":
        a, b = ring().sample(n, g), 0.3 * torch.randn(n, 2, generator=g, dtype=F64)
    elif case == "degenerate":  # all of b on a line: singular covariance, the potentials are skipped
        a = torch.randn(n, 2, generator=g, dtype=F64)
        b = torch.randn(n, 1, generator=g, dtype=F64) * torch.tensor([[1.0, 2.0]], dtype=F64)
    else:
        a, b = torch.randn(n, 80, generator=g, dtype=F64), torch.randn(n, 80, generator=g, dtype=F64) + 0.1
    cost = cdist(a.numpy(), b.numpy(), "sqeuclidean")
    r, c = linear_sum_assignment(cost)
    assert w2(a, b) ** 2 == pytest.approx(cost[r, c].mean(), rel=1e-12)


def test_w2_accepts_numpy_and_float32():
    g = gen(5)
    a, b = torch.randn(100, 2, generator=g, dtype=F64), torch.randn(100, 2, generator=g, dtype=F64)
    ref = w2(a, b)
    assert w2(a.numpy(), b.numpy()) == ref
    assert w2(a.float(), b.float()) == pytest.approx(ref, rel=1e-6)


def test_w2_rejects_bad_input_naming_the_argument():
    a = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"a and b must have the same number of samples.*4 \(a\).*3 \(b\)"):
        w2(a, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="b has dimension 3"):
        w2(a, torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"a must have shape \(N, d\)"):
        w2(torch.zeros(4), a)
    with pytest.raises(ValueError, match="b contains non-finite"):
        w2(a, torch.full((4, 2), float("nan")))
    with pytest.raises(ValueError, match="a must be a torch.Tensor"):
        w2([[0.0, 0.0]], a)


# ------------------------------------------------------------------------------------------ sliced W2


def test_sliced_w2_of_a_translation_is_the_shift_over_root_d():
    # Per direction θ (uniform on S^{d−1}) the projected samples are shifted by θᵀv, so
    # W2²(θᵀa, θᵀb) = (θᵀv)² exactly and E_θ (θᵀv)² = ‖v‖²/d. (θᵀv)²/‖v‖² ~ Beta(1/2, (d−1)/2),
    # variance 2(d−1)/(d²(d+2)): the estimate over P directions has that / P as its variance.
    d, p = 5, 2000
    g = gen(6)
    a = torch.randn(200, d, generator=g, dtype=F64)
    v = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=F64)
    got = sliced_w2(a, a + v, n_projections=p, generator=gen(7)) ** 2
    want = float(v @ v) / d
    se = float(v @ v) * math.sqrt(2 * (d - 1) / (d**2 * (d + 2)) / p)
    assert abs(got - want) < 4 * se  # 4 SE ≈ 10 % of the value; unnormalised directions would give ×5


def test_sliced_w2_is_at_most_w2():
    # For each θ the optimal permutation of a, b matches the projections, at cost ≤ ‖a_i − b_σ(i)‖².
    for seed in range(3):
        g = gen(10 + seed)
        a, b = ring().sample(150, g), torch.randn(150, 2, generator=g, dtype=F64)
        assert sliced_w2(a, b, n_projections=64, generator=g) <= w2(a, b) * (1 + 1e-12)


def test_sliced_w2_in_one_dimension_equals_w2():
    g = gen(11)
    a, b = torch.randn(300, 1, generator=g, dtype=F64), torch.randn(300, 1, generator=g, dtype=F64) * 2
    assert sliced_w2(a, b, n_projections=3) == pytest.approx(w2(a, b), rel=1e-12)


def test_sliced_w2_unequal_sizes_is_the_exact_1d_distance():
    # Quantile functions of {0, 1} and {0, 0.5, 1}: they differ by 0.5 on [1/3, 2/3) only,
    # so W2² = 0.25 · 1/3 = 1/12.
    a = torch.tensor([[0.0], [1.0]], dtype=F64)
    b = torch.tensor([[0.0], [0.5], [1.0]], dtype=F64)
    assert sliced_w2(a, b, n_projections=1) == pytest.approx(math.sqrt(1 / 12), rel=1e-12)
    # In general: replicating a (N) M times and b (M) N times gives equal-size sets with the same measures.
    g = gen(12)
    a, b = torch.randn(4, 1, generator=g, dtype=F64), torch.randn(6, 1, generator=g, dtype=F64) + 0.5
    assert sliced_w2(a, b, n_projections=1) == pytest.approx(w2(a.repeat(6, 1), b.repeat(4, 1)), rel=1e-12)


def test_sliced_w2_is_deterministic_given_a_seed_and_chunking_does_not_matter(monkeypatch):
    g = gen(13)
    a, b = torch.randn(100, 3, generator=g), torch.randn(120, 3, generator=g) + 1
    ref = sliced_w2(a, b, generator=gen(5))
    assert sliced_w2(a, b, generator=5) == ref
    assert sliced_w2(a, b) == sliced_w2(a, b, generator=common.DEFAULT_SEED)
    assert sliced_w2(a, b, generator=6) != ref
    monkeypatch.setattr(common, "CHUNK_ELEMENTS", 1000)
    assert sliced_w2(a, b, generator=5) == pytest.approx(ref, rel=1e-12)


def test_sliced_w2_rejects_bad_arguments():
    a = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="n_projections must be >= 1"):
        sliced_w2(a, a, n_projections=0)
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        sliced_w2(a, a, generator="seed")


# ------------------------------------------------------------------------------------------ MMD²


def naive_mmd2(x: np.ndarray, y: np.ndarray, k) -> float:
    """The U-statistic written out with explicit loops over distinct pairs."""
    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def test_mmd2_matches_the_written_out_u_statistic(monkeypatch):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) + 0.4
    h = 0.8
    want = naive_mmd2(x, y, lambda u, v: math.exp(-((u - v) ** 2).sum() / (2 * h * h)))
    got = mmd2(torch.from_numpy(x), torch.from_numpy(y), bandwidth=h)
    assert got.value == pytest.approx(want, rel=1e-12) and got.bandwidth == h
    monkeypatch.setattr(kernels.BUDGETS, "tile", 10)  # blocks of 1–2 rows
    assert mmd2(x, y, bandwidth=h).value == pytest.approx(want, rel=1e-12)


def test_shared_kernel_mmd2_is_the_metric():
    # scoregan.objectives.kernels.mmd2 (the estimator the trainers use) gives the metric's value
    # exactly, for a fixed and for the metric's median bandwidth, and the V-statistic is the plain mean.
    g = gen(21)
    x = torch.randn(40, 3, generator=g, dtype=F64)
    y = torch.randn(30, 3, generator=g, dtype=F64) + 0.5
    for bandwidth in (0.7, "median"):
        res = mmd2(x, y, bandwidth=bandwidth)
        shared = kernels.mmd2(kernels.kernel("gaussian", bandwidth=res.bandwidth), x, y)
        assert shared.ndim == 0 and float(shared) == res.value
    k = kernels.kernel("gaussian", bandwidth=0.7)
    v = kernels.mmd2(k, x, y, unbiased=False)
    assert float(v) == pytest.approx(float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()), rel=1e-12)
    # a median kernel is resolved once on the pooled [y; x] (max 1024 points) for all three terms
    med = kernels.mmd2(kernels.kernel("gaussian", bandwidth="median"), x, y)
    h = kernels.median_bandwidth(x, y)
    assert float(med) == pytest.approx(float(kernels.mmd2(kernels.kernel("gaussian", bandwidth=h), x, y)), rel=1e-14)
    # differentiable in both samples (the trainers' losses)
    xr, yr = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    gx, gy = torch.autograd.grad(kernels.mmd2(k, xr, yr), (xr, yr))
    assert torch.isfinite(gx).all() and torch.isfinite(gy).all() and gx.abs().sum() > 0
    with pytest.raises(ValueError, match="at least 2"):
        kernels.mmd2(k, x[:1], y)


def test_mmd2_of_the_same_array_is_negative():
    # With y = x the cross term (1/n²) Σ_{i,j} k(x_i, x_j) includes the n diagonal pairs, where
    # k = 1 is the kernel's maximum, while the within-sample terms exclude them. With
    # S = Σ_{i≠j} k_ij: MMD²_u = 2S/(n(n−1)) − 2(S + n)/n² = −(2/n)(1 − S/(n(n−1))) < 0 unless
    # every point coincides: the unbiased estimate is not an estimate for "two independent samples".
    g = gen(20)
    x = torch.randn(300, 2, generator=g, dtype=F64)
    h = 1.3
    res = mmd2(x, x, bandwidth=h)
    k = np.exp(-cdist(x.numpy(), x.numpy(), "sqeuclidean") / (2 * h * h))
    mean_offdiag = (k.sum() - np.trace(k)) / (300 * 299)
    assert res.value < 0
    assert res.value == pytest.approx(-(2 / 300) * (1 - mean_offdiag), rel=1e-10)


def test_mmd2_of_independent_draws_of_one_distribution_has_mean_zero():
    gm = ring()
    values = [mmd2(gm.sample(200, gen(100 + 2 * r)), gm.sample(200, gen(101 + 2 * r)), bandwidth=0.5).value
              for r in range(30)]
    mean, se = mean_and_se(values)
    assert abs(mean) < 3 * se


def test_mmd2_matches_the_gaussian_closed_form():
    # X ~ N(μ1, s²I_d), Y ~ N(μ2, s²I_d), k = exp(−‖x−y‖²/(2h²)). For Z ~ N(m, τ²I_d):
    # E exp(−‖Z‖²/(2h²)) = (h²/(h² + τ²))^{d/2} exp(−‖m‖²/(2(h² + τ²))); X − X', Y − Y', X − Y have
    # τ² = 2s², so MMD² = 2c (1 − exp(−‖μ1 − μ2‖²/(2(h² + 2s²)))), c = (h²/(h² + 2s²))^{d/2}.
    d, s, h = 2, 1.0, 1.0
    delta = torch.tensor([1.0, 0.5], dtype=F64)
    c = (h * h / (h * h + 2 * s * s)) ** (d / 2)
    want = 2 * c * (1 - math.exp(-float(delta @ delta) / (2 * (h * h + 2 * s * s))))
    values = []
    for r in range(8):
        g = gen(200 + r)
        x = s * torch.randn(800, d, generator=g, dtype=F64)
        y = s * torch.randn(800, d, generator=g, dtype=F64) + delta
        values.append(mmd2(x, y, bandwidth=h).value)
    mean, se = mean_and_se(values)
    assert abs(mean - want) < 4 * se and se < 0.05 * want  # ≈ 0.125 ± 0.002


def test_mmd2_median_bandwidth_is_the_pooled_median_distance():
    g = gen(21)
    x, y = torch.randn(300, 2, generator=g, dtype=F64), torch.randn(200, 2, generator=g, dtype=F64) + 1
    dists = np.sort(pdist(np.concatenate([x.numpy(), y.numpy()])))
    lower_median = dists[(len(dists) - 1) // 2]
    res = mmd2(x, y)
    assert res.bandwidth == pytest.approx(lower_median, rel=1e-12)
    assert median_heuristic(x, y) == res.bandwidth
    assert res.value == mmd2(x, y, bandwidth=res.bandwidth).value
    # More than 2048 pooled points: 2048 of them, at evenly spaced indices of [x; y].
    x, y = torch.randn(1500, 2, generator=g, dtype=F64), torch.randn(1500, 2, generator=g, dtype=F64) * 2
    pooled = np.concatenate([x.numpy(), y.numpy()])
    sub = pooled[np.round(np.linspace(0, 2999, 2048)).astype(int)]
    dists = np.sort(pdist(sub))
    assert mmd2(x, y).bandwidth == pytest.approx(dists[(len(dists) - 1) // 2], rel=1e-3)


def test_mmd2_rejects_bad_arguments():
    a = torch.randn(5, 2)
    with pytest.raises(ValueError, match="did you mean 'median'"):
        mmd2(a, a, bandwidth="medain")
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        mmd2(a, a, bandwidth=-1.0)
    with pytest.raises(ValueError, match="bandwidth must be a finite real number"):
        mmd2(a, a, bandwidth=True)
    with pytest.raises(ValueError, match="b needs at least 2 samples"):
        mmd2(a, a[:1])


# ------------------------------------------------------------------------------------------ energy


def mean_abs_normal(m: float, var: float) -> float:
    """E|N(m, var)| = σ√(2/π) exp(−m²/(2σ²)) + m (1 − 2Φ(−m/σ))."""
    s = math.sqrt(var)
    return s * math.sqrt(2 / math.pi) * math.exp(-m * m / (2 * var)) + m * (1 - 2 * norm.cdf(-m / s))


def test_energy_distance_matches_the_written_out_u_statistic(monkeypatch):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(8, 2)) * 2
    # energy = 2 E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖ is the U-statistic of the kernel −‖x − y‖.
    want = naive_mmd2(x, y, lambda u, v: -math.sqrt(((u - v) ** 2).sum()))
    assert energy_distance(x, y) == pytest.approx(want, rel=1e-12)
    monkeypatch.setattr(kernels.BUDGETS, "tile", 10)
    assert energy_distance(x, y) == pytest.approx(want, rel=1e-12)


def test_energy_distance_one_dimensional_closed_form():
    # X ~ N(0, 1), Y ~ N(Δ, 1): X − Y ~ N(−Δ, 2), X − X' ~ N(0, 2): energy = 2E|N(Δ, 2)| − 2E|N(0, 2)|.
    delta = 1.0
    want = 2 * mean_abs_normal(delta, 2.0) - 2 * mean_abs_normal(0.0, 2.0)
    values = []
    for r in range(10):
        g = gen(300 + r)
        values.append(energy_distance(torch.randn(1000, 1, generator=g, dtype=F64),
                                      torch.randn(1000, 1, generator=g, dtype=F64) + delta))
    mean, se = mean_and_se(values)
    assert abs(mean - want) < 4 * se and se < 0.05 * want  # ≈ 0.48


def test_energy_distance_three_dimensional_closed_form():
    # In d = 3: X − Y ~ N(−μ, 2I): ‖X − Y‖²/2 is noncentral χ²_3 with λ = ‖μ‖²/2, so
    # E‖X − Y‖ = E sqrt(2 χ'²) (a float64 numerical integral); E‖X − X'‖ = 2 Γ(2)/Γ(3/2) (a χ_3 mean × √2).
    mu = np.array([1.0, -0.5, 0.5])
    e_xy = ncx2(3, float(mu @ mu) / 2).expect(lambda t: np.sqrt(2 * t))
    e_xx = math.sqrt(2) * math.sqrt(2) * gamma_fn(2.0) / gamma_fn(1.5)
    want = 2 * e_xy - 2 * e_xx
    values = []
    for r in range(10):
        g = gen(400 + r)
        values.append(energy_distance(torch.randn(800, 3, generator=g, dtype=F64),
                                      torch.randn(800, 3, generator=g, dtype=F64) + torch.from_numpy(mu)))
    mean, se = mean_and_se(values)
    assert abs(mean - want) < 4 * se and se < 0.05 * want


# ------------------------------------------------------------------------------------------ KID


def cubic(u: np.ndarray, v: np.ndarray) -> float:
    return (u @ v / len(u) + 1.0) ** 3


def test_kid_with_one_full_subset_is_the_u_statistic():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=(9, 4)) + 0.3
    res = kid(x, y, subsets=3, subset_size=9)
    # Every "subset" is a permutation of all rows: the same value each time, std 0.
    assert res.mean == pytest.approx(naive_mmd2(x, y, cubic), rel=1e-12)
    assert res.std == pytest.approx(0.0, abs=1e-12) and (res.subsets, res.subset_size) == (3, 9)


def test_kid_matches_the_gaussian_closed_form():
    # k = (xᵀy/d + 1)³ = 1 + 3s + 3s² + s³, s = xᵀy/d. For independent X ~ N(μx, Σx), Y ~ N(μy, Σy):
    # E s = μxᵀμy/d, E s² = tr(Mx My)/d² (M = Σ + μμᵀ), E s³ = Σ_ijk Tx_ijk Ty_ijk / d³ with the third
    # moments T_ijk = μiμjμk + μiΣjk + μjΣik + μkΣij.
    d = 3
    mu_x, mu_y = np.zeros(d), np.array([0.5, -0.5, 0.25])
    cov_x = np.diag([1.0, 0.5, 2.0])
    cov_y = np.array([[1.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.8]])

    def third(mu, cov):
        return (np.einsum("i,j,k->ijk", mu, mu, mu) + np.einsum("i,jk->ijk", mu, cov)
                + np.einsum("j,ik->ijk", mu, cov) + np.einsum("k,ij->ijk", mu, cov))

    def expected_k(mx, cx, my, cy):
        es = mx @ my / d
        es2 = np.trace((cx + np.outer(mx, mx)) @ (cy + np.outer(my, my))) / d**2
        es3 = (third(mx, cx) * third(my, cy)).sum() / d**3
        return 1 + 3 * es + 3 * es2 + es3

    want = (expected_k(mu_x, cov_x, mu_x, cov_x) + expected_k(mu_y, cov_y, mu_y, cov_y)
            - 2 * expected_k(mu_x, cov_x, mu_y, cov_y))
    rng = np.random.default_rng(3)
    values = []
    for _ in range(10):
        x = rng.multivariate_normal(mu_x, cov_x, size=600)
        y = rng.multivariate_normal(mu_y, cov_y, size=600)
        values.append(kid(x, y, subsets=1, subset_size=600).mean)
    mean, se = mean_and_se(values)
    assert abs(mean - want) < 4 * se and se < 0.1 * want


def test_kid_subsets_are_reproducible_and_checked():
    g = gen(22)
    x, y = torch.randn(300, 5, generator=g), torch.randn(200, 5, generator=g)
    a = kid(x, y, subsets=5, subset_size=50, generator=gen(1))
    assert a == kid(x, y, subsets=5, subset_size=50, generator=1)
    assert a.std > 0 and kid(x, y, subsets=2).subset_size == 200
    with pytest.raises(ValueError, match="subset_size=201 exceeds"):
        kid(x, y, subset_size=201)


# ------------------------------------------------------------------------------------------ modes


P_HQ = 1 - math.exp(-4.5)  # P(‖N(0, σ²I₂)‖ <= 3σ)


def test_hq_radius_is_the_2d_rule_and_keeps_its_probability():
    assert hq_radius(3.0, 2) == pytest.approx(3.0, rel=1e-14)
    assert hq_probability(3.0) == pytest.approx(P_HQ, rel=1e-15)
    for d in (1, 3, 10, 100):
        assert chi2.cdf(hq_radius(3.0, d) ** 2, d) == pytest.approx(P_HQ, rel=1e-12)


def test_mode_stats_of_mixture_samples():
    # Components with different stds: a sample is HQ within 3σ_k of its (standardised) nearest mode.
    gm = ring(std=[0.05, 0.1, 0.05, 0.2, 0.05, 0.1, 0.05, 0.15], weights=[1, 2, 1, 2, 1, 2, 1, 2])
    n = 4000
    st = mode_stats(gm.sample(n, gen(30)), gm)
    assert (st.modes_covered, st.n_modes) == (8, 8) and all(st.covered)
    assert st.radius == pytest.approx(3.0) and st.hq_expected == pytest.approx(P_HQ)
    se = math.sqrt(P_HQ * (1 - P_HQ) / n)
    assert abs(st.hq_fraction - P_HQ) < 4 * se
    assert sum(st.counts) == round(st.hq_fraction * n)
    # Default thresholds: max(1, ceil(0.05 · N · w_k · p)), w_k = 1/12 or 2/12.
    assert st.min_counts == [math.ceil(0.05 * n * w * P_HQ) for w in [1 / 12, 2 / 12] * 4]
    json.dumps(st.as_dict())


@pytest.mark.parametrize("d", [1, 10])
def test_mode_stats_hq_fraction_is_the_same_in_any_dimension(d):
    means = torch.zeros(3, d, dtype=F64)
    means[:, 0] = torch.tensor([-20.0, 0.0, 20.0])
    gm = GaussianMixture(means, torch.tensor([0.5, 1.0, 2.0], dtype=F64))
    n = 4000
    st = mode_stats(gm.sample(n, gen(31)), gm)
    assert abs(st.hq_fraction - P_HQ) < 4 * math.sqrt(P_HQ * (1 - P_HQ) / n)
    assert st.modes_covered == 3
    if d == 10:
        assert st.radius > 4.7  # a fixed 3σ ball would hold only P(χ²_10 <= 9) ≈ 47 % of the samples


def test_mode_stats_collapse_and_far_away_samples():
    gm = ring()
    x = gm.means[3] + 0.01 * torch.randn(500, 2, generator=gen(32), dtype=F64)
    st = mode_stats(x, gm)
    assert st.modes_covered == 1 and st.covered[3] and st.counts[3] == 500 and st.hq_fraction == 1.0
    far = torch.randn(500, 2, generator=gen(33), dtype=F64) * 0.01 + 50.0
    st = mode_stats(far, gm)
    assert st.hq_fraction == 0.0 and st.modes_covered == 0 and st.counts == [0] * 8


def test_mode_stats_min_count_and_a_stand_in_mixture():
    stand_in = SimpleNamespace(means=np.array([[0.0, 0.0], [10.0, 0.0]]), weights=np.array([0.5, 0.5]),
                               component_stds=np.array([1.0, 1.0]))
    x = np.array([[0.1, 0.0]] * 5 + [[10.0, 0.2]] * 2)
    assert mode_stats(x, stand_in).modes_covered == 2  # default threshold: max(1, ceil(0.05·7·0.5·p)) = 1
    st = mode_stats(x, stand_in, min_count=3)
    assert st.covered == [True, False] and st.counts == [5, 2]
    with pytest.raises(ValueError, match="min_count must be >= 1"):
        mode_stats(x, stand_in, min_count=0)
    with pytest.raises(ValueError, match="lacks component_stds"):
        mode_stats(x, SimpleNamespace(means=stand_in.means, weights=stand_in.weights))
    with pytest.raises(ValueError, match=r"mixture.means must have shape \(K, 3\)"):
        mode_stats(np.zeros((4, 3)), stand_in)
    with pytest.raises(ValueError, match="n_std must be positive"):
        mode_stats(x, stand_in, n_std=0.0)


# ------------------------------------------------------------------------------------------ Fréchet


def test_gaussian_frechet_distance_closed_forms():
    # 1-D: (μa − μb)² + (σa − σb)².
    assert gaussian_frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1, rel=1e-12)
    # Commuting (diagonal) covariances: ‖Δμ‖² + Σ_i (√a_i − √b_i)².
    a, b = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.2, 0.5])
    want = 0.25 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert gaussian_frechet_distance([0, 0, 0.5], np.diag(a), [0, 0, 0], np.diag(b)) == pytest.approx(want, rel=1e-12)
    # General SPD pair: against scipy's sqrtm of the non-symmetric product.
    rng = np.random.default_rng(4)
    la, lb = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    ca, cb = la @ la.T + 0.1 * np.eye(4), lb @ lb.T + 0.1 * np.eye(4)
    want = np.trace(ca) + np.trace(cb) - 2 * np.trace(sqrtm(ca @ cb)).real
    assert gaussian_frechet_distance(np.zeros(4), ca, np.zeros(4), cb) == pytest.approx(want, rel=1e-10)


def test_frechet_distance_of_features():
    rng = np.random.default_rng(5)
    mu_a, mu_b = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.5, 0.0])
    ca = np.array([[1.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 0.5]])
    cb = np.diag([0.5, 1.0, 1.5])
    fa = rng.multivariate_normal(mu_a, ca, size=20000)
    fb = rng.multivariate_normal(mu_b, cb, size=20000)
    got = frechet_distance(fa, fb)
    # Exactly the formula on the sample mean and unbiased covariance:
    sample = gaussian_frechet_distance(fa.mean(0), np.cov(fa.T), fb.mean(0), np.cov(fb.T))
    assert got == pytest.approx(sample, rel=1e-10)
    # And, within sampling error (≈ 1 %), the population value:
    ref = ((mu_a - mu_b) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * np.trace(sqrtm(ca @ cb)).real
    assert got == pytest.approx(ref, rel=0.05)
    assert frechet_distance(fa[:50], fa[:50]) == pytest.approx(0.0, abs=1e-10)
    # Rank-deficient covariances (d > N) stay finite.
    assert math.isfinite(frechet_distance(rng.normal(size=(5, 20)), rng.normal(size=(6, 20))))


# ------------------------------------------------------------------------------------------ precision / recall


def test_precision_recall_hand_computed():
    # k = 1. Real radii: 0→1, 1→1, 2→1, 10→8; fake radii: 0.5→4.5, 5→1, 6→1, 19→1, 20→1.
    # Precision: 0.5 (ball of 0), 5 and 6 (ball of 10: |·−10| <= 8) are in; 19 (9 > 8) and 20 are out → 3/5.
    # Recall: 0, 1, 2 lie in the ball of 0.5 (radius 4.5); 10 is in none (5 > 1, 4 > 1, 9.5 > 4.5) → 3/4.
    real = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    fake = torch.tensor([[0.5], [5.0], [6.0], [19.0], [20.0]])
    assert precision_recall(real, fake, k=1) == pytest.approx((3 / 5, 3 / 4))


def test_precision_recall_on_mixtures(monkeypatch):
    gm = ring()
    real = gm.sample(1000, gen(40))
    same = precision_recall(real, gm.sample(1000, gen(41)))
    assert same.precision > 0.9 and same.recall > 0.9
    half = GaussianMixture(gm.means[:4], 0.05)  # covers 4 of the 8 modes
    p, r = precision_recall(real, half.sample(1000, gen(42)))
    assert p > 0.9 and abs(r - 0.5 * same.recall) < 0.05  # the real mass on the covered modes is ≈ 1/2
    monkeypatch.setattr(common, "CHUNK_ELEMENTS", 5000)
    assert precision_recall(real, half.sample(1000, gen(42))) == (p, r)
    with pytest.raises(ValueError, match="fake needs at least 4 samples"):
        precision_recall(real, real[:3])


# ------------------------------------------------------------------------------------------ toy report


def test_toy_report_keys_values_and_determinism():
    gm = ring()
    x, ref = gm.sample(400, gen(50)), gm.sample(300, gen(51))
    rep = toy_report(x, ref, mixture=gm, generator=gen(52))
    assert tuple(rep) == TOY_REPORT_KEYS + MODE_REPORT_KEYS
    assert all(type(v) in (float, int) for v in rep.values())
    json.dumps(rep)
    assert rep == toy_report(x.numpy(), ref.numpy(), mixture=gm, generator=52)
    m = mmd2(x, ref)
    assert (rep["mmd2"], rep["mmd2_bandwidth"]) == (m.value, m.bandwidth)
    assert rep["energy"] == energy_distance(x, ref)
    assert rep["fd"] == frechet_distance(x, ref) and rep["fd"] > 0
    assert rep["n_modes"] == 8 and rep["modes_covered"] == 8
    # W2 on 300 rows of x (a random subset), exact; sliced W2 on all rows.
    assert 0 < rep["sliced_w2"] <= 2 and 0 < rep["w2"] < 1
    no_mix = toy_report(x[:300], ref, generator=0)
    assert tuple(no_mix) == TOY_REPORT_KEYS and no_mix["w2"] == w2(x[:300], ref)
    assert toy_report(x, ref, w2_max_samples=50)["w2"] != rep["w2"]


def test_toy_report_distances_subset_equals_the_full_report():
    """``distances=`` computes only the chosen distances (mmd2 brings its bandwidth), each equal to the
    full report's value (the random draws do not depend on the choice); unknown names are refused."""
    gm = ring()
    x, ref = gm.sample(200, gen(53)), gm.sample(150, gen(54))
    full = toy_report(x, ref, mixture=gm, generator=3)
    part = toy_report(x, ref, mixture=gm, generator=3, distances=["sliced_w2", "fd"])
    assert tuple(part) == ("sliced_w2", "fd", *MODE_REPORT_KEYS)
    assert part["sliced_w2"] == full["sliced_w2"] and part["fd"] == full["fd"]
    assert tuple(toy_report(x, ref, distances=("mmd2",))) == ("mmd2", "mmd2_bandwidth")
    assert toy_report(x, ref, distances=()) == {}
    with pytest.raises(ValueError, match=r"distances = \['fid'\]"):
        toy_report(x, ref, distances=["fid"])
    with pytest.raises(ValueError, match=r"distances = 'fd'"):
        toy_report(x, ref, distances="fd")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_metrics_on_cuda_match_cpu():
    gm = ring()
    x, ref = gm.sample(300, gen(60)), gm.sample(300, gen(61))
    cpu = toy_report(x, ref, mixture=gm, generator=0)
    gpu = toy_report(x.cuda().float(), ref.cuda().float(), mixture=gm, generator=0)
    for key, value in cpu.items():
        assert gpu[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    assert precision_recall(x.cuda(), ref.cuda()) == precision_recall(x, ref)
    assert frechet_distance(x.cuda(), ref.cuda()) == pytest.approx(frechet_distance(x, ref), rel=1e-10)
    assert kid(x.cuda(), ref.cuda(), subsets=3, generator=0).mean == pytest.approx(
        kid(x, ref, subsets=3, generator=0).mean, rel=1e-10)
