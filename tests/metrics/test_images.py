"""Image metrics: the cached per-data-set classifier, FD / KID / precision-recall in its features, image grids.

The Fréchet-distance closed forms (two Gaussians, general SPD covariances) are tested in
tests/metrics/test_metrics.py (test_gaussian_frechet_distance_closed_forms, test_frechet_distance_of_features);
here only that image_report's ``fd`` is that function of the features.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import scoregan.metrics.classifier as classifier_module
from scoregan.metrics import (
    FeatureClassifier,
    frechet_distance,
    get_classifier,
    image_features,
    image_report,
    save_image_grid,
    train_classifier,
)


class Digits:
    """Stand-in image data set: sklearn's 8×8 digits in [-1, 1], a seeded 1437 / 360 split."""

    name = "digits-test"
    image_shape = (1, 8, 8)

    def __init__(self, heldout: bool = True, labels: bool = True):
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 8 - 1
        y = torch.tensor(d.target, dtype=torch.int64)
        p = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        self.images, self.labels = x[p[:1437]], (y[p[:1437]] if labels else None)
        self.heldout_images = x[p[1437:]] if heldout else None
        self.heldout_labels = y[p[1437:]] if heldout and labels else None

    def content_key(self) -> str:
        return hashlib.sha256(self.images.numpy().tobytes()).hexdigest()[:16]


class Flat:
    """Stub classifier: the features are the pixels, φ(x) = x.flatten(1)."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


@pytest.fixture(scope="module")
def digits() -> Digits:
    return Digits()


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> os.PathLike:
    return tmp_path_factory.mktemp("scoregan_cache")


@pytest.fixture(scope="module")
def trained(digits, cache_root) -> tuple[FeatureClassifier, float]:
    """The digits classifier with the default settings, trained once into <cache_root>/classifiers."""
    return get_classifier(digits, cache_dir=cache_root / "classifiers", progress=False)


# ------------------------------------------------------------------------------------------ classifier


def test_digits_classifier_accuracy_and_cache(digits, cache_root, trained, monkeypatch):
    model, acc = trained
    print(f"digits classifier held-out accuracy: {100 * acc:.2f} %")
    assert acc >= 0.97 and not model.loaded_from_cache and model.accuracy == acc
    files = list((cache_root / "classifiers").glob("digits-test-*.pt"))
    assert len(files) == 1 and not list((cache_root / "classifiers").glob(".*.tmp"))

    def fail(*args, **kwargs):
        raise AssertionError("a cached classifier must not be retrained")

    monkeypatch.setattr(classifier_module, "train_classifier", fail)
    again, acc2 = get_classifier(digits, cache_dir=cache_root / "classifiers", progress=False)
    assert acc2 == acc and again.loaded_from_cache and not again.training
    x = digits.heldout_images[:50]
    torch.testing.assert_close(again.features(x), model.features(x), rtol=0, atol=0)
    # $SCOREGAN_CACHE/classifiers is the default cache, read by image_report when no classifier is given.
    monkeypatch.setenv("SCOREGAN_CACHE", str(cache_root))
    report = image_report(digits.heldout_images, digits.images, dataset=digits)
    assert report == image_report(digits.heldout_images, digits.images, dataset=digits, classifier=model)
    # Other settings are another file (and would train).
    with pytest.raises(AssertionError, match="must not be retrained"):
        get_classifier(digits, cache_dir=cache_root / "classifiers", steps=10, progress=False)


def test_features_are_per_sample_and_shape_agnostic(digits, trained):
    model, _ = trained
    x = digits.heldout_images[:40]
    full = image_features(x, model)
    assert full.shape == (40, 128) and full.dtype == torch.float64
    torch.testing.assert_close(image_features(x.flatten(1), model), full, rtol=0, atol=0)
    # Other batch sizes change only the float32 rounding of the matrix products.
    torch.testing.assert_close(image_features(x, model, batch_size=7), full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(image_features(x[3:4], model), full[3:4], rtol=1e-5, atol=1e-5)
    model.train()  # dropout sits after the features: they stay deterministic
    try:
        torch.testing.assert_close(image_features(x, model), full, rtol=0, atol=0)
    finally:
        model.eval()


def test_a_data_set_without_labels_is_refused(tmp_path):
    with pytest.raises(ValueError, match="has no labels: the image metrics need a labelled data set"):
        get_classifier(Digits(labels=False), cache_dir=tmp_path)


def test_without_a_heldout_split_the_last_tenth_is_held_out(tmp_path, capsys):
    _, acc = get_classifier(Digits(heldout=False), cache_dir=tmp_path, steps=5, progress=False)
    assert "(144 images, 5 steps)" in capsys.readouterr().out
    assert round(acc * 144) == pytest.approx(acc * 144, abs=1e-9) and 0 <= acc <= 1


def test_train_classifier_is_deterministic_and_leaves_the_global_rng(digits):
    x, y = digits.images[:200], digits.labels[:200]
    state = torch.get_rng_state()
    kwargs = {"test_images": digits.heldout_images[:50], "test_labels": digits.heldout_labels[:50], "steps": 15,
              "seed": 3, "progress": False}
    a, acc_a = train_classifier(x, y, **kwargs)
    b, acc_b = train_classifier(x, y, **kwargs)
    assert torch.equal(torch.get_rng_state(), state) and acc_a == acc_b
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    c, _ = train_classifier(x, y, **{**kwargs, "seed": 4})
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_larger_images_get_three_conv_blocks():
    for shape in ((1, 28, 28), (3, 32, 32)):
        net = FeatureClassifier(shape, 10)
        assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 3
        assert net.features(torch.zeros(2, math.prod(shape))).shape == (2, 128)
        assert net(torch.zeros(2, *shape)).shape == (2, 10)


# ------------------------------------------------------------------------------------------ image_report


def test_real_vs_real_is_near_the_floor_and_noise_is_far(digits, trained):
    model, _ = trained
    noise = torch.rand(360, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    real = image_report(digits.heldout_images, digits.images, dataset=digits, classifier=model)
    far = image_report(noise.flatten(1), digits.images, dataset=digits, classifier=model)
    for name, r in (("real", real), ("noise", far)):
        print(f"{name}: FD {r['fd']:.3f}  KID {r['kid']:.4f} ± {r['kid_se']:.4f}  "
              f"precision {r['precision']:.3f}  recall {r['recall']:.3f}")
    assert set(real) == {"fd", "kid", "kid_se", "precision", "recall"}
    assert abs(real["kid"]) <= 2 * real["kid_se"]
    assert far["fd"] > 10 * real["fd"] and far["kid"] > 10 * abs(real["kid"])
    assert real["precision"] >= 0.9 and real["recall"] >= 0.9
    assert far["precision"] < 0.2 and far["recall"] < 0.2


def stub_data(d_shape=(1, 2, 2)) -> SimpleNamespace:
    return SimpleNamespace(name="stub", image_shape=d_shape)


def direct_kid(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² with k = (xᵀy/F + 1)³ written out in float64."""
    f = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T / f + 1) ** 3, (y @ y.T / f + 1) ** 3, (x @ y.T / f + 1) ** 3)
    n, m = len(x), len(y)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def test_kid_is_the_unbiased_statistic_and_fd_the_frechet_distance():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 4)) * 1.3 + 0.2
    # subset_size = N = M: every subset is a permutation of all rows, so each equals the full statistic.
    r = image_report(x, y, dataset=stub_data(), classifier=Flat(), subsets=3, subset_size=30)
    assert r["kid"] == pytest.approx(direct_kid(x, y), abs=1e-10, rel=0)
    assert r["kid_se"] == pytest.approx(0.0, abs=1e-10)
    assert r["fd"] == frechet_distance(x, y)


def test_kid_of_one_distribution_is_zero_within_two_standard_errors():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(1500, 4)), rng.normal(size=(1500, 4))
    r = image_report(x, y, dataset=stub_data(), classifier=Flat(), subsets=20, subset_size=150, seed=2)
    assert abs(r["kid"]) <= 2 * r["kid_se"] and r["kid_se"] > 0
    shifted = image_report(x, y + 1.0, dataset=stub_data(), classifier=Flat(), subsets=20, subset_size=150)
    assert shifted["kid"] > 10 * shifted["kid_se"]


def test_precision_recall_of_identical_and_far_samples():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(200, 1, 2, 2))
    same = image_report(ref, ref, dataset=stub_data(), classifier=Flat())
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    assert same["fd"] == pytest.approx(0.0, abs=1e-10)
    far = image_report(ref + 100.0, ref, dataset=stub_data(), classifier=Flat())
    assert far["precision"] == 0.0 and far["recall"] == 0.0


def test_image_report_checks_its_input():
    x = torch.zeros(10, 4)
    with pytest.raises(ValueError, match=r"samples must have shape \(N, 4\) or \(N, 1, 2, 2\)"):
        image_report(torch.zeros(10, 5), x, dataset=stub_data(), classifier=Flat())
    with pytest.raises(ValueError, match="samples contains non-finite"):
        image_report(torch.full((10, 4), float("nan")), x, dataset=stub_data(), classifier=Flat())


def test_inception_without_the_extra_names_the_install():
    if importlib.util.find_spec("torch_fidelity") or importlib.util.find_spec("torchmetrics"):
        pytest.skip("an Inception backend is installed")
    x = torch.rand(20, 3, 8, 8) * 2 - 1
    with pytest.raises(ImportError, match="pip install torch-fidelity"):
        image_report(x, x, dataset=stub_data((3, 8, 8)), classifier=Flat(), inception=True)


def test_inception_metrics_through_torch_fidelity():
    pytest.importorskip("torch_fidelity")
    weights = os.environ.get("SCOREGAN_INCEPTION_WEIGHTS")
    if not weights:
        pytest.skip("set SCOREGAN_INCEPTION_WEIGHTS to a local Inception weights file")
    g = torch.Generator().manual_seed(0)
    real = torch.rand(200, 3, 16, 16, generator=g) * 0.2 - 0.5
    other = torch.rand(200, 3, 16, 16, generator=g) * 0.2 - 0.5
    noise = torch.rand(200, 3, 16, 16, generator=g) * 2 - 1
    ds = stub_data((3, 16, 16))
    same = image_report(real, other, dataset=ds, classifier=Flat(), inception=weights, subset_size=100)
    diff = image_report(noise, other, dataset=ds, classifier=Flat(), inception=weights, subset_size=100)
    assert {"fid", "kid_inception"} <= set(same) and diff["fid"] > same["fid"]


# ------------------------------------------------------------------------------------------ image grids


def test_save_image_grid_writes_a_png_of_the_right_size(tmp_path):
    x = -torch.ones(10, 1, 8, 8)
    x[0] = 5.0  # clipped to white
    path = save_image_grid(x, tmp_path / "sub" / "grid.png", nrow=4)
    img = np.asarray(Image.open(path))
    assert path.is_file() and img.shape == (3 * 9 + 1, 4 * 9 + 1)
    assert img[1, 1] == 255 and img[1, 10] == 0 and img[0, 0] == 128 and img[9, 3] == 128
    rgb = save_image_grid(torch.zeros(5, 3 * 5 * 6), tmp_path / "rgb.png", image_shape=(3, 5, 6))
    assert np.asarray(Image.open(rgb)).shape == (2 * 6 + 1, 3 * 7 + 1, 3)
    flat = save_image_grid(torch.zeros(4, 64), tmp_path / "flat.png")  # square one-channel images inferred
    assert np.asarray(Image.open(flat)).shape == (2 * 9 + 1, 2 * 9 + 1)
    with pytest.raises(ValueError, match="pass image_shape"):
        save_image_grid(torch.zeros(4, 10), tmp_path / "bad.png")
