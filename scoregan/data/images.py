"""Finite sets of images: :class:`ImageDataset`, a deterministic :func:`make_loader`, and the
factories of the image data sets (digits as 1×8×8, MNIST, Fashion-MNIST, CIFAR-10, folders of
PNG/JPEG files, ``.npz`` arrays).

The particle space stays flat: ``sample`` returns (n, d) with d = C·H·W (row-major NCHW), and
``sample_images`` / ``images`` expose the same data as (n, C, H, W). Pixel values live in [-1, 1]
(uint8 x ↦ x / 127.5 − 1).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import Dataset as TorchDataset

from scoregan._checks import check_int
from scoregan.data.base import ArrayDataset, holdout_permutation
from scoregan.data.files import DataFileError, digits_dataset
from scoregan.data.readers import (
    cifar10_hint,
    load_npz_nchw,
    locate_cifar10,
    mnist_files_present,
    mnist_hint,
    read_cifar10,
    read_image_folder,
    read_mnist,
)

#: The torchvision dataset class that downloads each set.
TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Images as float32: uint8 mapped to [-1, 1] by x / 127.5 − 1 (0 → −1, 255 → 1); floats as they are."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 127.5 - 1.0
    return x.to(torch.float32)


class ImageDataset(ArrayDataset):
    """A finite set of N images (N, C, H, W), sampled uniformly with replacement as flat (n, C·H·W) rows.

    ``images`` are uint8 (kept compact, mapped to [-1, 1] on access) or floats (taken as given, meant
    in [-1, 1]); ``labels`` (N,) int64 or None. ``flip`` draws random horizontal flips in ``sample``.
    ``test_split`` (images, labels) is the official test set of mnist / fashion_mnist / cifar10, from
    which :meth:`with_heldout` draws the held-out images.
    """

    test_split: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def __init__(self, name: str, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor | None = None,
                 params: dict | None = None, *, flip: bool = False):
        x = _as_tensor(images)
        if x.ndim != 4 or x.shape[0] < 2 or 0 in x.shape:
            raise ValueError(f"{name}: expected images of shape (N, C, H, W) with N >= 2, got {tuple(x.shape)}")
        if x.dtype != torch.uint8:
            if not (x.is_floating_point() or x.dtype in (torch.int16, torch.int32, torch.int64, torch.int8)):
                raise ValueError(f"{name}: expected uint8 or float images, got {x.dtype}")
            x = x.to(torch.float32)
            if not torch.isfinite(x).all():
                raise ValueError(f"{name}: the images contain NaN or Inf")
        y = None if labels is None else _as_tensor(labels).to(torch.int64)
        if y is not None and tuple(y.shape) != (x.shape[0],):
            raise ValueError(f"{name}: expected {x.shape[0]} labels, got shape {tuple(y.shape)}")
        self.name = name
        self._store = x.contiguous()
        self.image_shape = tuple(int(s) for s in x.shape[1:])
        self.dim = int(np.prod(self.image_shape))
        self.labels = y
        self.flip = bool(flip)
        self._params = dict(params or {})
        self._float: torch.Tensor | None = None
        self.heldout = None
        self.heldout_labels = None

    # -- views -----------------------------------------------------------------------------------

    @property
    def n_images(self) -> int:
        return int(self._store.shape[0])

    @property
    def images(self) -> torch.Tensor:
        """(N, C, H, W) float32 in [-1, 1] (computed once and cached)."""
        if self._float is None:
            self._float = to_unit_range(self._store)
        return self._float

    @property
    def points(self) -> torch.Tensor:  # type: ignore[override]
        """(N, d) float32: the images flattened (a view of :attr:`images`)."""
        return self.images.reshape(self.n_images, self.dim)

    @property
    def heldout_images(self) -> torch.Tensor | None:
        """(m, C, H, W) float32, or None."""
        return None if self.heldout is None else self.heldout.reshape(-1, *self.image_shape)

    def item(self, i: int, flip: bool = False) -> torch.Tensor:
        """Image ``i`` as a flat (d,) float32 row, mirrored left-right when ``flip``."""
        x = to_unit_range(self._store[i])
        return (x.flip(-1) if flip else x).reshape(self.dim)

    # -- sampling --------------------------------------------------------------------------------

    def _draw(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        idx = torch.randint(0, self.n_images, (n,), generator=generator)
        x = to_unit_range(self._store[idx])
        if self.flip:
            f = torch.rand(n, generator=generator) < 0.5
            x[f] = x[f].flip(-1)
        return x

    def _sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return self._draw(n, generator).reshape(n, self.dim)

    def sample_images(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, C, H, W) float32: the same draws as :meth:`sample`, not flattened."""
        check_int("n", n, minimum=1)
        return self._draw(n, generator)

    # -- splits ----------------------------------------------------------------------------------

    def _like(self, images: torch.Tensor, labels: torch.Tensor | None) -> ImageDataset:
        out = ImageDataset(self.name, images, labels, self._params, flip=self.flip)
        out.test_split = self.test_split
        return out

    def hold_out(self, m: int, seed: int = 0) -> ImageDataset:
        """Split off ``m`` images (a permutation seeded with ``seed``): trains on the other N − m, carries
        the m as ``heldout`` (m, d), ``heldout_images`` and ``heldout_labels``."""
        perm = holdout_permutation(self.name, self.n_images, m, seed)
        y = self.labels
        out = self._like(self._store[perm[m:]], None if y is None else y[perm[m:]])
        out.heldout = to_unit_range(self._store[perm[:m]]).reshape(m, self.dim).contiguous()
        out.heldout_labels = None if y is None else y[perm[:m]]
        return out

    def with_heldout(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor | None,
                     m: int, seed: int = 0) -> ImageDataset:
        """This training set with ``m`` of the given (test) images (T, C, H, W), chosen by a permutation
        seeded with ``seed``, as ``heldout``; ValueError naming data.holdout when m > T."""
        x = _as_tensor(images)
        check_int("data.holdout", m, minimum=1)
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"{self.name}: held-out images of shape {tuple(x.shape[1:])}, expected {self.image_shape}")
        t = int(x.shape[0])
        if m > t:
            raise ValueError(f"data.holdout = {m}: the test split of {self.name!r} has {t} images; at most {t} can "
                             "be held out")
        perm = torch.randperm(t, generator=torch.Generator().manual_seed(seed))[:m]
        out = self._like(self._store, self.labels)
        out.heldout = to_unit_range(x[perm]).reshape(m, self.dim).contiguous()
        out.heldout_labels = None if labels is None else _as_tensor(labels).to(torch.int64)[perm]
        return out

    # -- identity --------------------------------------------------------------------------------

    def content_key(self) -> str:
        """A short sha256 hex (16 characters) of the training images, their dtype, shape and labels."""
        h = hashlib.sha256()
        h.update(f"{self._store.dtype}:{tuple(self._store.shape)}".encode())
        h.update(memoryview(self._store.numpy()).cast("B"))
        if self.labels is not None:
            h.update(memoryview(self.labels.contiguous().numpy()).cast("B"))
        return h.hexdigest()[:16]

    def params(self) -> dict:
        out = {**self._params, "n_points": self.n_images}
        if self.heldout is not None:
            out["n_heldout"] = int(self.heldout.shape[0])
        return out


# ---------------------------------------------------------------------------------------------
# A deterministic DataLoader
# ---------------------------------------------------------------------------------------------


class _FlatImages(TorchDataset):
    """Items (index, flip) → flat (d,) float32 rows of an :class:`ImageDataset`."""

    def __init__(self, data: ImageDataset):
        self.data = data

    def __len__(self) -> int:
        return self.data.n_images

    def __getitem__(self, item: tuple[int, bool]) -> torch.Tensor:
        i, f = item
        return self.data.item(i, f)


class _ShuffleFlipSampler(Sampler):
    """Each epoch a permutation and (with ``flip``) coin flips, drawn in the main process from one
    seeded generator, so the batches do not depend on the number of workers."""

    def __init__(self, n: int, generator: torch.Generator, flip: bool):
        self.n, self.generator, self.flip = n, generator, flip

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        perm = torch.randperm(self.n, generator=self.generator).tolist()
        flips = (torch.rand(self.n, generator=self.generator) < 0.5).tolist() if self.flip else [False] * self.n
        return iter(zip(perm, flips))


def _seed_worker(worker_id: int) -> None:
    """Seed numpy and random in a loader worker from torch's per-worker seed (itself from the loader's generator)."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(dataset: ImageDataset, batch_size: int, *, seed: int, workers: int = 0,
                drop_last: bool = True) -> DataLoader:
    """A DataLoader of shuffled flat (batch_size, d) float32 batches of the training images (random
    flips when ``dataset.flip``); the same ``seed`` gives the same batches for any ``workers``."""
    if not isinstance(dataset, ImageDataset):
        raise ValueError(f"make_loader needs an ImageDataset, got {type(dataset).__name__}")
    check_int("batch_size", batch_size, minimum=1)
    check_int("seed", seed, minimum=0)
    check_int("workers", workers, minimum=0)
    g = torch.Generator().manual_seed(seed)
    sampler = _ShuffleFlipSampler(dataset.n_images, g, dataset.flip)
    return DataLoader(_FlatImages(dataset), batch_size=batch_size, sampler=sampler, num_workers=workers,
                      drop_last=drop_last, worker_init_fn=_seed_worker,
                      generator=torch.Generator().manual_seed(seed + 1))


# ---------------------------------------------------------------------------------------------
# Factories (keyword arguments named as the DataConfig fields)
# ---------------------------------------------------------------------------------------------


def digits_images() -> ImageDataset:
    """scikit-learn's 8×8 digits as (1797, 1, 8, 8) images in [-1, 1] (x/8 − 1, the flat digits'
    values reshaped), labels the digits."""
    flat = digits_dataset()
    return ImageDataset("digits", flat.points.reshape(-1, 1, 8, 8), flat.labels, {"layout": "image"})


def _present(name: str, path: str) -> bool:
    if name == "cifar10":
        try:
            locate_cifar10(path)
        except DataFileError:
            return False
        return True
    return mnist_files_present(path, name)


def _download(name: str, path: str) -> None:
    """Fetch ``name`` into ``path`` with torchvision unless its files are there already; without
    torchvision, a DataFileError saying which files to put where (before any work)."""
    if _present(name, path):
        return
    hint = cifar10_hint(path) if name == "cifar10" else mnist_hint(path, name)
    try:
        import torchvision  # optional: only the download needs it
    except ImportError:
        raise DataFileError(f"data.download = true needs torchvision, which is not importable: {hint}, "
                            "or install torchvision") from None
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        getattr(torchvision.datasets, TORCHVISION_CLASSES[name])(root=str(path), train=True, download=True)
    except Exception as exc:  # network, disk, checksum: torchvision raises many kinds
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise DataFileError(f"data.download: torchvision could not fetch {name} into {str(path)!r} ({msg}); "
                            f"{hint}") from None


def _idx_dataset(name: str, path: str, download: bool) -> ImageDataset:
    if download:
        _download(name, path)
    x, y = read_mnist(path, "train", name=name)
    xt, yt = read_mnist(path, "test", name=name)
    out = ImageDataset(name, x, y, {"path": str(path)})
    out.test_split = (torch.from_numpy(xt), torch.from_numpy(yt))
    return out


def mnist_dataset(path: str, download: bool = False) -> ImageDataset:
    """MNIST's 60,000 training digits (N, 1, 28, 28) from the IDX files in ``path`` (or ``path/MNIST/raw``);
    the 10,000 test images are the ``test_split`` (data.holdout draws from them)."""
    return _idx_dataset("mnist", path, download)


def fashion_mnist_dataset(path: str, download: bool = False) -> ImageDataset:
    """Fashion-MNIST (N, 1, 28, 28) from the IDX files in ``path`` (or ``path/FashionMNIST/raw``);
    the test images are the ``test_split``."""
    return _idx_dataset("fashion_mnist", path, download)


def cifar10_dataset(path: str, download: bool = False, flip: bool = False) -> ImageDataset:
    """CIFAR-10's 50,000 training images (N, 3, 32, 32) from the python batches (folder or tarball) at
    ``path``; the 10,000 test images are the ``test_split``."""
    if download:
        _download("cifar10", path)
    x, y = read_cifar10(path, "train")
    xt, yt = read_cifar10(path, "test")
    out = ImageDataset("cifar10", x, y, {"path": str(path), "flip": flip}, flip=flip)
    out.test_split = (torch.from_numpy(xt), torch.from_numpy(yt))
    return out


def _at_least_two(n: int, path: str, what: str) -> None:
    if n < 2:
        raise DataFileError(f"data.path = {str(path)!r}: {n} {what}; a finite data set needs at least 2")


def image_folder_dataset(path: str, image_size: int = 64, flip: bool = False) -> ImageDataset:
    """The PNG/JPEG files under ``path`` (N, C, image_size, image_size), labelled by class subfolder if any."""
    x, y = read_image_folder(path, image_size)
    _at_least_two(x.shape[0], path, "image files")
    return ImageDataset("image_folder", x, y, {"path": str(path), "image_size": image_size, "flip": flip}, flip=flip)


def npz_images_dataset(path: str, key: str = "x") -> ImageDataset:
    """Images from array ``key`` of an ``.npz`` file (NCHW, NHWC or NHW; uint8 mapped to [-1, 1],
    floats taken as given)."""
    arr = load_npz_nchw(path, key)
    _at_least_two(arr.shape[0], path, f"images in array {key!r}")
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
    return ImageDataset("npz", arr, None, {"path": str(path), "key": key, "layout": "image"})


__all__ = [
    "ImageDataset",
    "cifar10_dataset",
    "digits_images",
    "fashion_mnist_dataset",
    "image_folder_dataset",
    "make_loader",
    "mnist_dataset",
    "npz_images_dataset",
    "to_unit_range",
]
