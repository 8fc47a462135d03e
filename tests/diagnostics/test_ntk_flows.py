"""Function-space discriminator training and NTK particle flows (scoregan.diagnostics.ntk_flows):
closed forms against torchdiffeq and an independent matrix exponential, the link to gradient descent
on a wide finite network, the generator velocities, the stall of bias-free ReLU flows, bad input."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch

from scoregan.data.toys import TwoMoons
from scoregan.diagnostics.ntk import NTKMLP, NTKKernel
from scoregan.diagnostics.ntk_flows import (
    KernelDiscriminator,
    generator_velocity,
    particle_flow,
    train_discriminator,
)
from scoregan.objectives import kernel as make_kernel
from tests.helpers import gen

F64 = torch.float64





def problem(n_real=14, n_fake=11, seed=0):
    g = gen(seed)
    real = torch.randn(n_real, 2, generator=g, dtype=F64) * 0.7 + 1.0
    fake = torch.randn(n_fake, 2, generator=g, dtype=F64) * 0.7 - 0.5
    queries = torch.randn(9, 2, generator=g, dtype=F64) * 1.5
    return real, fake, queries


KERNELS = {
    "ntk-relu-bias": lambda: NTKKernel(depth=3, activation="relu", weight_std=1.4, bias_std=0.5),
    "ntk-erf": lambda: NTKKernel(depth=2, activation="erf", bias_std=0.3),
    "gaussian": lambda: make_kernel("gaussian", bandwidth=0.9),
}


def f0_fn(z: torch.Tensor) -> torch.Tensor:
    return torch.sin(z[:, 0]) + 0.3 * z[:, 1] ** 2


@pytest.mark.parametrize("kname", list(KERNELS))
@pytest.mark.parametrize("loss", ["ipm", "ls"])
@pytest.mark.parametrize("f0", [None, f0_fn], ids=["f0=0", "f0=sin"])
def test_closed_forms_equal_torchdiffeq_integration(kname, loss, f0):
    real, fake, q = problem()
    k = KERNELS[kname]()
    closed = train_discriminator(k, real, fake, 1.7, loss=loss, f0=f0, method="closed_form")
    ode = train_discriminator(k, real, fake, 1.7, loss=loss, f0=f0, method="ode", rtol=1e-11, atol=1e-13)
    scale = max(1.0, closed(q).abs().max().item())
    assert (closed(q) - ode(q)).abs().max() <= 1e-6 * scale
    assert (closed.grad(q) - ode.grad(q)).abs().max() <= 1e-6 * max(1.0, closed.grad(q).abs().max().item())
    assert (closed.coef - ode.coef).abs().max() <= 1e-6 * max(1.0, closed.coef.abs().max().item())


def test_ipm_is_t_times_the_witness():
    """f_t = t (mean_real k(·, y) − mean_gen k(·, x)) with f_0 = 0, and its gradient likewise."""
    real, fake, q = problem()
    k = KERNELS["ntk-relu-bias"]()
    disc = train_discriminator(k, real, fake, 2.5, loss="ipm")
    expected = 2.5 * (k(q, real).mean(1) - k(q, fake).mean(1))
    torch.testing.assert_close(disc(q), expected, rtol=1e-12, atol=1e-12)
    grad = 2.5 * (k.grad_x(q, real).mean(1) - k.grad_x(q, fake).mean(1))
    torch.testing.assert_close(disc.grad(q), grad, rtol=1e-10, atol=1e-12)


def test_least_squares_against_scipy_matrix_exponential():
    """c = W ∫_0^t e^{−sKW} ds (τ − f_0(γ)) from scipy's expm of [[−tKW, tI], [0, 0]] (that
    non-normal block matrix costs expm ~1e-8 of accuracy here; torchdiffeq agrees with ours to 1e-14)."""
    from scipy.linalg import expm

    real, fake, _ = problem()
    k = KERNELS["ntk-erf"]()
    t = 3.0
    disc = train_discriminator(k, real, fake, t, loss="ls", f0=f0_fn)
    gamma = torch.cat([real, fake])
    n, nr = gamma.shape[0], real.shape[0]
    w = torch.cat([torch.full((nr,), 1 / nr), torch.full((n - nr,), 1 / (n - nr))]).double()
    tau = torch.cat([torch.ones(nr), -torch.ones(n - nr)]).double()
    a = (k(gamma, gamma) * w[None, :]).numpy()
    big = torch.zeros(2 * n, 2 * n, dtype=F64).numpy()
    big[:n, :n], big[:n, n:] = -t * a, t * torch.eye(n, dtype=F64).numpy()
    phi = torch.from_numpy(expm(big)[:n, n:])
    coef = w * (phi @ (tau - f0_fn(gamma)))
    torch.testing.assert_close(disc.coef, coef, rtol=1e-6, atol=1e-8)


def test_least_squares_converges_to_targets_on_gamma():
    """As t → ∞ with a positive definite kernel, the LS discriminator interpolates ±1 on γ."""
    real, fake, _ = problem()
    k = make_kernel("gaussian", bandwidth=0.3)
    disc = train_discriminator(k, real, fake, 1e4, loss="ls", f0=f0_fn)
    tau = torch.cat([torch.ones(real.shape[0]), -torch.ones(fake.shape[0])]).double()
    torch.testing.assert_close(disc(torch.cat([real, fake])), tau, rtol=0, atol=1e-6)


def test_gan_ode_solves_its_equation_and_ascends_the_objective():
    real, fake, _ = problem()
    k = KERNELS["ntk-relu-bias"]()
    gamma = torch.cat([real, fake])
    nr, n = real.shape[0], gamma.shape[0]
    w = torch.cat([torch.full((nr,), 1 / nr), torch.full((n - nr,), 1 / (n - nr))]).double()
    is_real = torch.arange(n) < nr
    gram = k(gamma, gamma)

    def coef(t):
        return train_discriminator(k, real, fake, t, loss="gan", rtol=1e-11, atol=1e-13).coef

    def objective(c):
        f = gram @ c
        return (w * torch.where(is_real, torch.nn.functional.logsigmoid(f), torch.nn.functional.logsigmoid(-f))).sum()

    t, h = 0.8, 1e-4
    derivative = (coef(t + h) - coef(t - h)) / (2 * h)
    f_t = gram @ coef(t)
    rhs = w * torch.where(is_real, torch.sigmoid(-f_t), -torch.sigmoid(f_t))
    torch.testing.assert_close(derivative, rhs, rtol=1e-6, atol=1e-8)
    values = [objective(coef(s)).item() for s in (0.0, 0.3, 1.0, 3.0)]
    assert values[0] == pytest.approx(-2.0 * math.log(2.0))  # mean_real + mean_gen of log ½
    assert all(b > a for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("loss", ["ipm", "ls", "gan"])
def test_function_space_training_matches_a_wide_network(loss):
    """Gradient ascent on a width-4096 NTKMLP (learning rate η, n steps) against the infinite-width
    discriminator at time t = nη from the same f_0: relative distance of the trained part ~ width^(−½)
    (measured ≈ 0.01), far below that at width 256 (≈ 0.07)."""
    g = gen(3)
    real = torch.randn(16, 2, generator=g, dtype=F64) * 0.5 + 1.0
    fake = torch.randn(16, 2, generator=g, dtype=F64) * 0.5 - 0.5
    test = torch.randn(30, 2, generator=g, dtype=F64)
    arch = {"depth": 1, "activation": "erf", "weight_std": 1.5, "bias_std": 0.5}
    gamma = torch.cat([real, fake])
    w = torch.full((32,), 1 / 16, dtype=F64)
    tau = torch.cat([torch.ones(16), -torch.ones(16)]).double()
    k = NTKKernel(**arch)
    lam = torch.linalg.eigvalsh(k(gamma, gamma) / 16).max().item()
    eta, steps = 0.02 / lam, 100

    def distance(width):
        net = NTKMLP(2, width, generator=gen(1), dtype=F64, **arch)
        f0 = copy.deepcopy(net)
        params = list(net.parameters())
        for _ in range(steps):
            f = net(gamma)
            if loss == "ipm":
                obj = (w * tau * f).sum()
            elif loss == "ls":
                obj = -0.5 * (w * (tau - f) ** 2).sum()
            else:
                obj = (w * torch.nn.functional.logsigmoid(tau * f)).sum()
            grads = torch.autograd.grad(obj, params)
            with torch.no_grad():
                for p, gr in zip(params, grads):
                    p.add_(eta * gr)
        disc = train_discriminator(k, real, fake, eta * steps, loss=loss, f0=f0)
        with torch.no_grad():
            return ((net(test) - disc(test)).norm() / (disc(test) - f0(test)).norm()).item()

    wide = distance(4096)
    assert wide < 0.04
    if loss == "ipm":
        assert wide < distance(256) / 3


# ------------------------------------------------------------------ velocities and flows


@pytest.mark.parametrize("loss", ["ipm", "ls", "gan"])
@pytest.mark.parametrize("generator_loss", ["non_saturating", "saturating"])
def test_generator_velocity_is_minus_grad_of_a_of_f(loss, generator_loss):
    """v = −∇ₓ a(f(x)), checked by autograd of a(f(x)) with a written out per loss."""
    real, fake, q = problem()
    disc = train_discriminator(KERNELS["ntk-erf"](), real, fake, 1.0, loss=loss)
    sat = generator_loss == "saturating"
    a = {
        "ipm": lambda f: -f,
        "ls": (lambda f: -0.5 * (f + 1) ** 2) if sat else (lambda f: 0.5 * (f - 1) ** 2),
        "gan": (lambda f: -torch.nn.functional.softplus(f)) if sat else (lambda f: torch.nn.functional.softplus(-f)),
    }[loss]
    qr = q.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(a(disc(qr)).sum(), qr)
    v = generator_velocity(disc, q, loss=loss, generator_loss=generator_loss)
    torch.testing.assert_close(v, -auto, rtol=1e-9, atol=1e-11)


def test_discriminator_with_initial_function_and_evaluation_anywhere():
    real, fake, q = problem()
    k = KERNELS["gaussian"]()
    disc = train_discriminator(k, real, fake, 0.0, loss="ls", f0=f0_fn)
    torch.testing.assert_close(disc(q), f0_fn(q))  # t = 0: f = f_0
    qr = q.clone().requires_grad_(True)
    (g0,) = torch.autograd.grad(f0_fn(qr).sum(), qr)
    torch.testing.assert_close(disc.grad(q), g0)
    assert isinstance(disc, KernelDiscriminator) and disc.centres.shape == (25, 2) and disc.n_real == 14


def test_median_bandwidth_is_resolved_on_gamma_once():
    real, fake, q = problem()
    disc = train_discriminator(make_kernel("gaussian", bandwidth="median"), real, fake, 1.0, loss="ipm")
    h = torch.pdist(torch.cat([real, fake])).median().item()
    assert disc.kernel.bandwidth == pytest.approx(h)
    direct = 1.0 * (make_kernel("gaussian", bandwidth=h)(q, real).mean(1)
                    - make_kernel("gaussian", bandwidth=h)(q, fake).mean(1))
    torch.testing.assert_close(disc(q), direct)


def _energy(a, b):
    return (2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()).item()


def test_flow_records_trajectories_and_moves_toward_the_target():
    real, fake, _ = problem(20, 20)
    res = particle_flow(make_kernel("gaussian", bandwidth=1.0), real, fake, loss="ls", n_steps=12,
                        step_size=0.5, disc_time=2.0, record_every=5)
    assert res.trajectory.shape == (4, 20, 2)
    assert res.steps.tolist() == [0, 5, 10, 12]
    torch.testing.assert_close(res.trajectory[0], fake)
    assert _energy(res.final, real) < 0.5 * _energy(fake, real)


def test_bias_free_relu_flow_stalls_while_biased_converges():
    """DESIGN.md §5: the bias-free ReLU NTK is positively homogeneous, its MMD flow stalls short of the
    target (energy distance flat between rounds 50 and 100), while with biases it keeps converging."""
    g = gen(1)
    target = TwoMoons().sample(32, g).double()
    start = torch.randn(32, 2, generator=g, dtype=F64)
    out = {}
    for bias in (1.0, 0.0):
        k = NTKKernel(depth=3, activation="relu", weight_std=math.sqrt(2), bias_std=bias)
        v0 = generator_velocity(train_discriminator(k, target, start, 1.0), start)
        res = particle_flow(k, target, start, n_steps=100, step_size=0.15 / v0.norm(dim=1).median().item(),
                            record_every=50)
        out[bias] = [_energy(frame, target) for frame in res.trajectory]
    with_b, without = out[1.0], out[0.0]
    assert with_b[2] < 0.5 * with_b[1]  # still converging
    assert abs(without[2] - without[1]) < 0.1 * without[1]  # stalled
    assert without[2] > 10 * with_b[2]


# ------------------------------------------------------------------ bad input


def test_bad_arguments_name_the_argument():
    real, fake, q = problem()
    k = KERNELS["gaussian"]()
    with pytest.raises(ValueError, match="loss"):
        train_discriminator(k, real, fake, 1.0, loss="wgan")
    with pytest.raises(ValueError, match="method"):
        train_discriminator(k, real, fake, 1.0, loss="gan", method="closed_form")
    with pytest.raises(ValueError, match="method"):
        train_discriminator(k, real, fake, 1.0, method="euler")
    with pytest.raises(ValueError, match="time"):
        train_discriminator(k, real, fake, -1.0)
    with pytest.raises(ValueError, match="time"):
        train_discriminator(k, real, fake, float("nan"))
    with pytest.raises(ValueError, match="fake"):
        train_discriminator(k, real, fake[:, :1], 1.0)
    with pytest.raises(ValueError, match="fake"):
        train_discriminator(k, real, fake.float(), 1.0)
    with pytest.raises(ValueError, match="kernel"):
        train_discriminator(lambda a, b: a @ b.T, real, fake, 1.0)
    with pytest.raises(ValueError, match="f0"):
        train_discriminator(k, real, fake, 1.0, f0=3.0)
    disc = train_discriminator(k, real, fake, 1.0)
    with pytest.raises(ValueError, match="generator_loss"):
        generator_velocity(disc, q, generator_loss="minimax")
    with pytest.raises(ValueError, match="x"):
        generator_velocity(disc, q[:, :1])
    with pytest.raises(ValueError, match="n_steps"):
        particle_flow(k, real, fake, n_steps=-1)
    with pytest.raises(ValueError, match="step_size"):
        particle_flow(k, real, fake, step_size=0.0)
    with pytest.raises(ValueError, match="record_every"):
        particle_flow(k, real, fake, record_every=0)
