"""The empirical NTK of finite networks (scoregan.diagnostics.ntk) against explicit Jacobian
products and its infinite-width limit."""

from __future__ import annotations

import math

import pytest
import torch

from scoregan.diagnostics.ntk import (
    NTKMLP,
    empirical_ntk,
    infinite_ntk,
)
from tests.helpers import gen, points

F64 = torch.float64




def _explicit_ntk(model, x, y):
    params = [p for p in model.parameters() if p.requires_grad]

    def jac(z):
        rows = []
        for i in range(z.shape[0]):
            grads = torch.autograd.grad(model(z[i : i + 1]).sum(), params)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
        return torch.stack(rows)

    return jac(x) @ jac(y).T


@pytest.mark.parametrize("which", ["ntkmlp", "sequential"])
def test_empirical_ntk_equals_explicit_jacobian_product(which):
    torch.manual_seed(0)
    if which == "ntkmlp":
        model = NTKMLP(3, 16, 2, "tanh", weight_std=1.2, bias_std=0.4, generator=gen(8), dtype=F64)
    else:
        model = torch.nn.Sequential(torch.nn.Linear(3, 12), torch.nn.Softplus(), torch.nn.Linear(12, 1)).double()
    x, y = points(5, 3, 9), points(4, 3, 10)
    ref = _explicit_ntk(model, x, y)
    torch.testing.assert_close(empirical_ntk(model, x, y), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(empirical_ntk(model, x, y, chunk_size=2), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(empirical_ntk(model, x), _explicit_ntk(model, x, x), rtol=1e-10, atol=1e-10)


def test_ntkmlp_is_the_network_of_infinite_ntk():
    """The NNGP is the covariance of f at initialisation: check Var f(x) by Monte Carlo over inits."""
    x = points(2, 3, 11)
    outs = torch.stack([NTKMLP(3, 256, 2, "relu", weight_std=1.4, bias_std=0.5, generator=gen(100 + s),
                               dtype=F64)(x) for s in range(400)])
    cov = outs.T @ outs / outs.shape[0]
    _, nngp = infinite_ntk(x, x, depth=2, activation="relu", weight_std=1.4, bias_std=0.5)
    # 400 draws: Monte Carlo error ~ √(2/400) ≈ 7 % of the variance, plus O(1/width).
    assert ((cov - nngp).abs() / nngp.diagonal().max()).max() < 0.25


def test_empirical_ntk_converges_to_infinite_width():
    """Mean relative Frobenius error over initialisations falls like width^(−1/2): the fitted log–log
    slope over widths 64, 256, 1024 must be ≤ −0.3 (theory −0.5), each error below the previous."""
    x, y = points(6, 3, 12), points(5, 3, 13)
    arch = {"depth": 2, "activation": "relu", "weight_std": math.sqrt(2), "bias_std": 0.5}
    k_inf = infinite_ntk(x, y, **arch)[0]
    widths, errors = [64, 256, 1024], []
    for w in widths:
        errs = [((empirical_ntk(NTKMLP(3, w, generator=gen(s), dtype=F64, **arch), x, y) - k_inf).norm()
                 / k_inf.norm()).item() for s in range(6)]
        errors.append(sum(errs) / len(errs))
    lw, le = torch.log(torch.tensor(widths, dtype=F64)), torch.log(torch.tensor(errors, dtype=F64))
    slope = (((lw - lw.mean()) * (le - le.mean())).sum() / ((lw - lw.mean()) ** 2).sum()).item()
    assert errors[0] > errors[1] > errors[2]
    assert slope <= -0.3, (errors, slope)
    assert errors[-1] < 0.15
