"""Image data sets: files in the real formats load through ``make_dataset`` with exact pixels and
labels in [-1, 1], splits keep labels and shapes, flips and loaders are deterministic under a seed,
and configs or downloads that cannot work are refused with one line naming the field."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from scoregan.data import (
    DataFileError,
    ImageDataset,
    digits_images,
    make_dataset,
    make_loader,
    validate_data_config,
)
from scoregan.schema import ConfigError, DataConfig
from tests.data.test_readers import (
    cifar_batches,
    cifar_expected,
    write_cifar_folder,
    write_cifar_tarball,
    write_mnist,
    write_png,
)


def _unit(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.float32) / 127.5 - 1)


def _asymmetric(n: int = 6, c: int = 3, h: int = 4, w: int = 5) -> torch.Tensor:
    """uint8 images (n, c, h, w), all distinct and none equal to its own or another's mirror."""
    x = torch.arange(n * c * h * w, dtype=torch.int64).reshape(n, c, h, w) % 251
    return x.to(torch.uint8)


def _member(rows: torch.Tensor, of: torch.Tensor) -> torch.Tensor:
    """(n,) bool: whether each row of ``rows`` equals some row of ``of`` exactly."""
    return (rows[:, None, :] == of[None]).all(-1).any(1)


# ---------------------------------------------------------------------------------------------
# Loading through make_dataset
# ---------------------------------------------------------------------------------------------


def test_mnist_loads_with_exact_values_and_test_split_holdout(tmp_path):
    written = write_mnist(tmp_path, n_train=10, n_test=6)
    d = make_dataset(DataConfig(name="mnist", path=str(tmp_path)))
    assert isinstance(d, ImageDataset) and d.image_shape == (1, 28, 28) and d.dim == 784
    assert d.points.shape == (10, 784) and d.points.dtype == torch.float32
    assert d.points[0, 0] == -1.0 and d.points[0, 1] == 1.0  # pixel 0 -> -1, 255 -> 1
    assert torch.equal(d.images[:, 0], _unit(written["train"][0]))
    assert torch.equal(d.points, d.images.reshape(10, 784))
    assert torch.equal(d.labels, torch.from_numpy(written["train"][1].astype(np.int64)))
    h = make_dataset(DataConfig(name="mnist", path=str(tmp_path), holdout=4, seed=3))
    assert torch.equal(h.points, d.points)  # training keeps all 10; the 4 come from the test split
    test_x, test_y = _unit(written["test"][0]).reshape(6, 784), torch.from_numpy(written["test"][1].astype(np.int64))
    assert h.heldout.shape == (4, 784) and h.heldout_images.shape == (4, 1, 28, 28)
    rows = [int(torch.nonzero((test_x == r).all(1))[0]) for r in h.heldout]
    assert len(set(rows)) == 4 and torch.equal(h.heldout_labels, test_y[rows])
    assert torch.equal(make_dataset(DataConfig(name="mnist", path=str(tmp_path), holdout=4, seed=3)).heldout, h.heldout)
    assert h.params()["n_heldout"] == 4
    with pytest.raises(ConfigError, match=r"data\.holdout = 7: the test split of 'mnist' has 6 images"):
        make_dataset(DataConfig(name="mnist", path=str(tmp_path), holdout=7))


def test_fashion_mnist_reads_the_torchvision_layout(tmp_path):
    written = write_mnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    d = make_dataset(DataConfig(name="fashion_mnist", path=str(tmp_path)))
    assert d.name == "fashion_mnist" and torch.equal(d.images[:, 0], _unit(written["train"][0]))


@pytest.mark.parametrize("form", ["folder", "tarball"])
def test_cifar10_loads_from_folder_or_tarball(tmp_path, form):
    batches = cifar_batches()
    if form == "folder":
        where = write_cifar_folder(tmp_path, batches).parent
    else:
        where = write_cifar_tarball(tmp_path / "cifar-10-python.tar.gz", batches)
    d = make_dataset(DataConfig(name="cifar10", path=str(where), holdout=3, flip=True))
    x, y = cifar_expected(batches, "train")
    assert d.image_shape == (3, 32, 32) and d.flip and torch.equal(d.images, _unit(x))
    assert torch.equal(d.labels, torch.from_numpy(y))
    tx, _ = cifar_expected(batches, "test")
    assert d.heldout.shape == (3, 3072) and all((_unit(tx).reshape(-1, 3072) == r).all(1).any() for r in d.heldout)


def test_image_folder_and_npz_image_layout(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8) for _ in range(3)]
    for i, (cls, a) in enumerate(zip(["b", "a", "b"], imgs)):
        write_png(tmp_path / "imgs" / cls / f"{i}.png", a)
    d = make_dataset(DataConfig(name="image_folder", path=str(tmp_path / "imgs"), image_size=6))
    assert d.image_shape == (3, 6, 6) and d.labels.tolist() == [0, 1, 1]  # a/1, b/0, b/2
    assert torch.equal(d.images[0], _unit(imgs[1].transpose(2, 0, 1)))
    assert d.params()["image_size"] == 6
    x = rng.integers(0, 256, size=(4, 5, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=x)
    n = make_dataset(DataConfig(name="npz", path=str(tmp_path / "a.npz"), layout="image"))
    assert isinstance(n, ImageDataset) and n.image_shape == (3, 5, 5)
    assert torch.equal(n.images, _unit(x.transpose(0, 3, 1, 2)))
    flat = make_dataset(DataConfig(name="npz", path=str(tmp_path / "a.npz")))
    assert not isinstance(flat, ImageDataset) and flat.dim == 75


def test_digits_image_layout_equals_the_flat_one_reshaped():
    flat = make_dataset(DataConfig(name="digits"))
    img = make_dataset(DataConfig(name="digits", layout="image"))
    assert flat.image_shape == (1, 8, 8) and img.image_shape == (1, 8, 8) and img.dim == 64
    assert torch.equal(img.images, flat.points.reshape(-1, 1, 8, 8)) and torch.equal(img.points, flat.points)
    assert torch.equal(img.labels, flat.labels) and flat.labels.shape == (1797,)
    assert torch.equal(digits_images().labels[:10], torch.arange(10))
    a = make_dataset(DataConfig(name="digits", layout="image", holdout=300, seed=5))
    b = make_dataset(DataConfig(name="digits", holdout=300, seed=5))
    assert isinstance(a, ImageDataset) and torch.equal(a.points, b.points) and torch.equal(a.heldout, b.heldout)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.heldout_labels, b.heldout_labels)


# ---------------------------------------------------------------------------------------------
# The dataset object
# ---------------------------------------------------------------------------------------------


def test_hold_out_keeps_labels_and_shape_and_is_deterministic():
    x, y = _asymmetric(8), torch.arange(8) % 3
    d = ImageDataset("t", x, y)
    h = d.hold_out(3, seed=1)
    assert isinstance(h, ImageDataset) and h.image_shape == (3, 4, 5) and h.points.shape == (5, 60)
    assert h.heldout_images.shape == (3, 3, 4, 5) and h.heldout_labels.shape == (3,)
    for part, labels in ((h.points, h.labels), (h.heldout, h.heldout_labels)):
        idx = [int(torch.nonzero((d.points == r).all(1))[0]) for r in part]
        assert torch.equal(labels, y[idx])
    assert torch.equal(d.hold_out(3, seed=1).heldout, h.heldout)
    assert not torch.equal(d.hold_out(3, seed=2).heldout, h.heldout)
    with pytest.raises(ValueError, match=r"data\.holdout = 7"):
        d.hold_out(7)


def test_sampling_and_flips_follow_the_generator():
    x = _asymmetric(6)
    plain, flipped = ImageDataset("t", x), ImageDataset("t", x, flip=True)
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    a = flipped.sample(64, g(0))
    assert a.shape == (64, 60) and a.dtype == torch.float32
    assert torch.equal(a, flipped.sample(64, g(0))) and not torch.equal(a, flipped.sample(64, g(1)))
    assert torch.equal(flipped.sample_images(64, g(0)).reshape(64, 60), a)
    imgs = plain.images
    mirrored = imgs.flip(-1).reshape(6, 60)
    is_orig, is_mirror = _member(a, plain.points), _member(a, mirrored)
    assert (is_orig | is_mirror).all() and is_orig.any() and is_mirror.any()
    # without flips the same generator draws the same indices, unflipped
    b = plain.sample(64, g(0))
    assert _member(b, plain.points).all()
    assert torch.equal((a == b).all(1), is_orig)


def test_content_key():
    x = _asymmetric(6)
    d = ImageDataset("t", x, torch.arange(6))
    k = d.content_key()
    assert len(k) == 16 and int(k, 16) >= 0
    assert ImageDataset("other name", x.clone(), torch.arange(6)).content_key() == k
    assert ImageDataset("t", x, torch.arange(6).flip(0)).content_key() != k
    assert ImageDataset("t", x[:5], torch.arange(5)).content_key() != k
    assert d.hold_out(2, seed=0).content_key() != k


@pytest.mark.parametrize("workers", [0, 2])
def test_make_loader_is_deterministic(workers):
    d = ImageDataset("t", _asymmetric(10), flip=True)
    batches = lambda seed, w: [b for _ in range(2) for b in make_loader(d, 4, seed=seed, workers=w)]  # noqa: E731
    a = batches(7, workers)
    assert len(a) == 4 and all(b.shape == (4, 60) and b.dtype == torch.float32 for b in a)
    assert all(torch.equal(u, v) for u, v in zip(a, batches(7, workers)))
    assert all(torch.equal(u, v) for u, v in zip(a, batches(7, 0)))  # the workers do not change the batches
    assert not all(torch.equal(u, v) for u, v in zip(a, batches(8, workers)))
    plain = ImageDataset("t", _asymmetric(10))
    epoch = torch.cat(list(make_loader(plain, 5, seed=0, workers=workers)))
    assert sorted(map(tuple, epoch.tolist())) == sorted(map(tuple, plain.points.tolist()))


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------


def test_missing_files_say_what_to_put_where(tmp_path):
    with pytest.raises(DataFileError) as info:
        make_dataset(DataConfig(name="mnist", path=str(tmp_path)))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("data.path = ") and str(tmp_path) in msg
    assert "t10k-labels-idx1-ubyte.gz" in msg and "data.download = true" in msg
    with pytest.raises(DataFileError, match=r"no CIFAR-10 batches found: put cifar-10-python\.tar\.gz"):
        make_dataset(DataConfig(name="cifar10", path=str(tmp_path)))


def test_download_without_torchvision_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    target = tmp_path / "new"
    with pytest.raises(DataFileError) as info:
        make_dataset(DataConfig(name="mnist", path=str(target), download=True))
    msg = str(info.value)
    assert msg.startswith("data.download = true needs torchvision") and "\n" not in msg
    assert ("put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
            f"t10k-labels-idx1-ubyte.gz (from http://yann.lecun.com/exdb/mnist/ or a mirror) into {str(target)!r}") in msg
    assert msg.endswith("or install torchvision") and not target.exists()
    with pytest.raises(DataFileError, match=r"needs torchvision.*put cifar-10-python\.tar\.gz"):
        make_dataset(DataConfig(name="cifar10", path=str(target), download=True))
    write_mnist(tmp_path / "have")  # files already there: no download needed
    assert make_dataset(DataConfig(name="mnist", path=str(tmp_path / "have"), download=True)).dim == 784


def test_download_goes_through_torchvision(tmp_path, monkeypatch):
    calls = []

    def fake_mnist(root, train, download):
        calls.append((root, train, download))
        write_mnist(tmp_path / "MNIST" / "raw")

    fake = types.SimpleNamespace(datasets=types.SimpleNamespace(MNIST=fake_mnist))
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    d = make_dataset(DataConfig(name="mnist", path=str(tmp_path), download=True))
    assert calls == [(str(tmp_path), True, True)] and d.points.shape == (10, 784)


@pytest.mark.parametrize("kw, match", [
    ({"name": "mnist", "path": "/x", "layout": "image"}, r"data\.layout = 'image' is not used by dataset 'mnist'"),
    ({"name": "mnist", "path": "/x", "flip": True}, r"data\.flip = True is not used by dataset 'mnist'"),
    ({"name": "image_folder", "path": "/x", "download": True}, r"data\.download = True is not used by dataset"),
    ({"name": "cifar10", "path": "/x", "image_size": 32}, r"data\.image_size = 32 is not used by dataset 'cifar10'"),
    ({"name": "8gaussians", "layout": "image"}, r"data\.layout = 'image' is not used by dataset '8gaussians'"),
    ({"name": "digits", "flip": True}, r"data\.flip = True is not used by dataset 'digits' \(it takes layout\)"),
    ({"name": "mnist"}, r"data\.path must name a folder of IDX files \(or where data\.download"),
    ({"name": "image_folder"}, r"data\.path must name a folder of PNG/JPEG images for dataset"),
    ({"name": "image_folder", "path": __file__}, r"data\.path = '.*test_images\.py': a file, expected a folder of"),
])
def test_config_refusals_name_the_field(kw, match):
    with pytest.raises(ConfigError, match=match) as info:
        validate_data_config(DataConfig(**kw))
    assert "\n" not in str(info.value)


def test_config_accepts_image_sets_with_holdout(tmp_path):
    validate_data_config(DataConfig(name="cifar10", path=str(tmp_path / "later"), download=True, flip=True, holdout=5))
    validate_data_config(DataConfig(name="image_folder", path=str(tmp_path), image_size=16, holdout=5))
    validate_data_config(DataConfig(name="digits", layout="image", holdout=5))
