"""Generator steepness ‖J_G(z)‖₂ and discriminator gradient statistics, against closed forms and
explicit float64 Jacobians."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

from scoregan.diagnostics import (
    batch_stats,
    spectral_norm_batch,
    steepness,
)
from scoregan.models import Generator

# (latent k, output d, hidden widths, activation)
SHAPES = [
    (2, 2, [16, 16], "tanh"),
    (2, 784, [32], "relu"),
    (8, 64, [64, 64], "gelu"),
    (16, 784, [64, 64], "relu"),
    (64, 2, [32], "softplus"),
    (64, 784, [128, 128], "leaky_relu"),
]

def _pair(k, d, hidden, act, seed=0):
    """A random MLP generator in float32 and its exact float64 copy."""
    torch.manual_seed(seed)
    g32 = Generator(k, d, hidden=hidden, activation=act)
    g64 = Generator(k, d, hidden=hidden, activation=act).double()
    g64.load_state_dict({n: p.double() for n, p in g32.state_dict().items()})
    return g32, g64

def _svd_top(g64, z):
    """Largest singular value (and right vector) of the explicit float64 Jacobian, per row."""
    jac = vmap(jacrev(lambda zi: g64(zi[None])[0]))(z.double())  # (N, d, k)
    _, s, vh = torch.linalg.svd(jac)
    return s[:, 0], vh[:, 0, :]


@pytest.mark.parametrize("method", ["lanczos", "power"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k,d,hidden,act", SHAPES)
def test_matches_explicit_jacobian_svd(k, d, hidden, act, dtype, method):
    g32, g64 = _pair(k, d, hidden, act, seed=k * 1000 + d)
    z = torch.randn(6, k, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref, _ = _svd_top(g64, z)
    net = g32 if dtype == torch.float32 else g64
    tol = 1e-5 if dtype == torch.float32 else 1e-7
    res = spectral_norm_batch(net, z.to(dtype), iters=5000, tol=tol, method=method, rng=3)
    assert res.converged and res.sigma.dtype == dtype and res.sigma.shape == (6,)
    rel = ((res.sigma.double() - ref) / ref).abs().max().item()
    assert rel < 1e-4, f"relative error {rel:.2e} vs the float64 SVD"
    if method == "lanczos":
        assert res.iters <= k  # Krylov space exhausted after k products: exact


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_linear_generator_closed_form(method):
    """G(z) = A z + b with A = U diag(s) Vᵀ: every row has steepness s_max and right vector ±v₁."""
    gen = torch.Generator().manual_seed(0)
    k, d = 12, 30
    u, _ = torch.linalg.qr(torch.randn(d, k, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(k, k, generator=gen, dtype=torch.float64))
    s = torch.linspace(3.0, 0.5, k, dtype=torch.float64)  # gap 3 : 2.77
    lin = nn.Linear(k, d).double()
    with torch.no_grad():
        lin.weight.copy_(u @ torch.diag(s) @ v.T)
    z = torch.randn(5, k, generator=gen, dtype=torch.float64)
    res = spectral_norm_batch(lin, z, iters=2000, tol=1e-9, method=method)
    torch.testing.assert_close(res.sigma, torch.full((5,), 3.0, dtype=torch.float64), rtol=1e-10, atol=0)
    assert torch.allclose((res.vector @ v[:, 0]).abs(), torch.ones(5, dtype=torch.float64), atol=1e-6)


def test_right_singular_vector_and_row_independence():
    g32, g64 = _pair(6, 40, [32, 32], "tanh", seed=5)
    z = torch.randn(7, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref_s, ref_v = _svd_top(g64, z)
    res = spectral_norm_batch(g64, z, tol=1e-10)
    torch.testing.assert_close(res.sigma, ref_s, rtol=1e-9, atol=0)
    assert torch.allclose((res.vector * ref_v).sum(1).abs(), torch.ones(7, dtype=torch.float64), atol=1e-6)
    # batched rows = rows one at a time (the generator acts row-wise)
    one = torch.cat([steepness(g64, z[i : i + 1], tol=1e-10) for i in range(7)])
    torch.testing.assert_close(one, res.sigma, rtol=1e-9, atol=0)


def test_lanczos_never_below_power_after_same_products():
    """The Ritz value maximises the Rayleigh quotient over the Krylov space the power iterates span."""
    _, g64 = _pair(32, 200, [64], "relu", seed=9)
    z = torch.randn(16, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ref, _ = _svd_top(g64, z)
    for t in (2, 5, 10):
        lz = spectral_norm_batch(g64, z, iters=t, tol=1e-14, method="lanczos", rng=7)
        pw = spectral_norm_batch(g64, z, iters=t, tol=1e-14, method="power", rng=7)
        assert lz.iters == pw.iters == t
        assert bool((lz.sigma >= pw.sigma * (1 - 1e-12)).all())
        assert bool((lz.sigma <= ref * (1 + 1e-12)).all())  # Ritz values never overshoot
    assert not pw.converged  # 10 power iterations are far from a 1e-14 residual


def test_deterministic_start_and_warm_start():
    g32, _ = _pair(16, 100, [64], "relu", seed=11)
    z = torch.randn(32, 16, generator=torch.Generator().manual_seed(0))
    a = spectral_norm_batch(g32, z, iters=4, tol=1e-12, rng=torch.Generator().manual_seed(5))
    b = spectral_norm_batch(g32, z, iters=4, tol=1e-12, rng=5)
    c = spectral_norm_batch(g32, z, iters=4, tol=1e-12, rng=6)
    assert torch.equal(a.sigma, b.sigma)  # same seed, same numbers
    assert not torch.equal(a.sigma, c.sigma)  # truncated: the start vector matters
    # warm start at the converged singular vector: one power step reproduces sigma
    full = spectral_norm_batch(g32, z, tol=1e-6)
    warm = spectral_norm_batch(g32, z, iters=1, tol=1e-3, method="power", v0=full.vector)
    torch.testing.assert_close(warm.sigma, full.sigma, rtol=1e-5, atol=0)


def test_zero_jacobian_gives_zero_not_nan():
    class Const(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Parameter(torch.randn(5))

        def forward(self, z):
            return self.c.expand(z.shape[0], 5) + 0 * z.sum(1, keepdim=True)

    for method in ("lanczos", "power"):
        res = spectral_norm_batch(Const(), torch.randn(4, 3), method=method)
        assert torch.equal(res.sigma, torch.zeros(4)) and res.converged


def test_eval_mode_and_no_side_effects():
    """Dropout off and spectral-norm buffers untouched during the measurement; modes restored."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.utils.parametrizations.spectral_norm(nn.Linear(4, 32)), nn.Tanh(), nn.Dropout(0.5),
                        nn.Linear(32, 10))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    z = torch.randn(8, 4)
    a, b = steepness(net, z), steepness(net, z)
    assert torch.equal(a, b)  # dropout would make these differ
    assert net.training and all(m.training for m in net.modules())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
    assert all(p.grad is None for p in net.parameters())


def test_argument_errors():
    g = Generator(2, 2, hidden=[8])
    z = torch.randn(3, 2)
    with pytest.raises(ValueError, match="method"):
        steepness(g, z, method="svd")
    with pytest.raises(ValueError, match="iters"):
        steepness(g, z, iters=0)
    with pytest.raises(ValueError, match="tol"):
        steepness(g, z, tol=0.0)
    with pytest.raises(ValueError, match="z"):
        steepness(g, torch.randn(3))
    with pytest.raises(ValueError, match="v0"):
        spectral_norm_batch(g, z, v0=torch.randn(2, 2))


def test_batch_stats_against_numpy():
    x = torch.randn(101, generator=torch.Generator().manual_seed(0)).exp()
    s = batch_stats(x, "p_", quantiles=(0.1, 0.25, 0.9))
    a = x.double().numpy()
    expected = {"p_mean": a.mean(), "p_median": np.median(a), "p_max": a.max(), "p_min": a.min(),
                "p_std": a.std(ddof=1), "p_q10": np.quantile(a, 0.1), "p_q25": np.quantile(a, 0.25),
                "p_q90": np.quantile(a, 0.9)}
    assert set(s) == set(expected)
    for key, val in expected.items():
        assert math.isclose(s[key], val, rel_tol=1e-12), key
    assert batch_stats(torch.tensor([1.0, 2.0, 3.0, 4.0]))["median"] == 2.5  # the midpoint, not the lower median
    with pytest.raises(ValueError, match="NaN"):
        batch_stats(torch.tensor([1.0, float("nan")]))
