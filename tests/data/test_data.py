"""Data: toys are deterministic under a seed, mixtures are exact, files load or fail clearly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scoregan.config import ConfigError, load_config
from scoregan.data import DATASETS, FILE_BACKED, DataFileError, make_dataset, npz_dataset


def _data(name, **kw):
    return make_dataset(load_config(None, [f"data.name={name}", *[f"data.{k}={v}" for k, v in kw.items()]]).data)


@pytest.mark.parametrize("name", [n for n in DATASETS if n not in FILE_BACKED])
def test_every_dataset_is_deterministic_and_finite(name):
    d = _data(name)
    a = d.sample(500, generator=torch.Generator().manual_seed(7))
    b = d.sample(500, generator=torch.Generator().manual_seed(7))
    c = d.sample(500, generator=torch.Generator().manual_seed(8))
    assert a.shape == (500, d.dim) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()


def test_eight_gaussians_matches_torchcfm_convention():
    d = _data("8gaussians")
    mix = d.mixture
    assert mix.n_components == 8
    assert torch.allclose(mix.means.norm(dim=1), torch.full((8,), 5.0, dtype=mix.means.dtype))
    assert torch.allclose(mix.covariances[0], math.sqrt(0.1) * torch.eye(2, dtype=mix.means.dtype))
    x = d.sample(40000, generator=torch.Generator().manual_seed(0)).double()
    # the mixture's covariance: sqrt(0.1) I + E[mu mu^T] = (sqrt(0.1) + 12.5) I
    cov = torch.cov(x.T)
    assert torch.allclose(cov, (math.sqrt(0.1) + 12.5) * torch.eye(2, dtype=torch.float64), atol=0.4)


def test_grid_and_nd_mixtures():
    g = _data("25gaussians")
    assert g.mixture.n_components == 25 and set(g.mixture.means[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    nd = _data("gmm", dim=10, n_modes=16)
    assert nd.dim == 10 and nd.mixture.n_components == 16
    assert torch.allclose(nd.mixture.means.norm(dim=1), torch.full((16,), 4.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_modes"):
        _data("25gaussians", n_modes=24)


def test_non_mixture_toys_have_their_shapes():
    x = _data("checkerboard").sample(20000, generator=torch.Generator().manual_seed(0))
    cell = ((x / 4 + 1) * 2).floor().long()  # 4x4 board on [-4, 4]^2 -> cells 0..3
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()  # only dark cells
    r = _data("rings", noise=0.0).sample(1000, generator=torch.Generator().manual_seed(0)).norm(dim=1)
    assert torch.allclose(r, r.round(), atol=1e-5)  # radii 1, 2, 3, 4
    m = _data("two_moons", noise=0.0).sample(1000, generator=torch.Generator().manual_seed(0))
    assert m.abs().max() < 3.0


def test_digits_are_64d_in_range():
    d = _data("digits")
    assert d.dim == 64 and d.points.shape[0] == 1797
    assert d.points.min() >= -1 and d.points.max() <= 1


def test_npz_roundtrip_and_errors(tmp_path):
    arr = np.random.default_rng(0).normal(size=(50, 3, 2)).astype(np.float32)
    p = tmp_path / "d.npz"
    np.savez(p, x=arr, y=arr[:, 0])
    d = npz_dataset(str(p))
    assert d.dim == 6 and torch.allclose(d.points, torch.from_numpy(arr.reshape(50, 6)))
    with pytest.raises(DataFileError, match=r"data\.key = 'z'.*\['x', 'y'\]"):
        npz_dataset(str(p), key="z")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(DataFileError, match="bad.npz"):
        npz_dataset(str(bad))
    with pytest.raises(ConfigError, match="data.path must name"):
        load_config(None, ["data.name=npz"])


def test_holdout_splits_a_finite_set_disjointly_and_reproducibly():
    full = _data("digits")
    d = _data("digits", holdout=300, seed=3)
    assert d.points.shape == (1497, 64) and d.heldout.shape == (300, 64)
    # the two parts are a partition of the original rows (as a multiset: digits has duplicates)
    rows = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731
    assert rows(torch.cat([d.points, d.heldout])) == rows(full.points)
    # training draws come only from the training part
    x = d.sample(2000, generator=torch.Generator().manual_seed(0))
    assert torch.cdist(x, d.points).min(1).values.max() == 0
    assert torch.equal(_data("digits", holdout=300, seed=3).heldout, d.heldout)
    assert not torch.equal(_data("digits", holdout=300, seed=4).heldout, d.heldout)
    assert d.params()["n_heldout"] == 300 and full.heldout is None


def test_holdout_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"data\.holdout = 10: dataset '8gaussians' is a distribution"):
        _data("8gaussians", holdout=10)
    with pytest.raises(ConfigError, match=r"data\.holdout = 1796: .*1797 points; at most 1795"):
        _data("digits", holdout=1796)
    with pytest.raises(ConfigError, match=r"data\.holdout"):
        load_config(None, ["data.name=digits", "data.holdout=-1"])
