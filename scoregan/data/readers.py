"""Pure readers of image data files: IDX (MNIST, Fashion-MNIST), CIFAR-10 python batches, folders of
PNG/JPEG files and ``.npz`` arrays.

Each returns numpy arrays in NCHW layout (images (N, C, H, W), labels (N,) int64) and raises a
:class:`~scoregan.data.files.DataFileError` whose one-line message names the field (``data.path``
or ``data.key``), the file and what was expected, for a missing file, a wrong shape or header, or a
corrupt file. Nothing here downloads anything or touches torch.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from scoregan.data.files import DataFileError

#: Where the files of each downloadable set come from (named in the "missing file" messages).
SOURCES = {
    "mnist": "http://yann.lecun.com/exdb/mnist/ or a mirror",
    "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html",
}
#: The torchvision folder (under ``data.path``) that holds the raw IDX files of each set.
TORCHVISION_RAW = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw"}
#: The standard IDX file names of each split: (images, labels).
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
CIFAR10_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _fail(path: str | Path, what: str, field: str = "data.path") -> DataFileError:
    return DataFileError(f"{field} = {str(path)!r}: {what}")


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split = {split!r}: allowed values are 'train', 'test'")


# ---------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)
# ---------------------------------------------------------------------------------------------


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """The unsigned-byte array of an IDX file (``.gz`` or raw), shaped by its big-endian dimensions.

    ``ndim`` = 3 expects images (magic 0x00000803, (N, H, W)); 1 expects labels (magic 0x00000801, (N,)).
    """
    p = Path(path)
    if not p.is_file():
        raise _fail(p, "no such file")
    try:
        if p.suffix == ".gz":
            with gzip.open(p, "rb") as f:
                raw = f.read()
        else:
            raw = p.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise _fail(p, f"corrupt file, expected a gzipped IDX file ({_one_line(exc)})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise _fail(p, "not an IDX file (expected a header starting with two zero bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if ndim is not None and magic != _IDX_MAGIC.get(ndim):
        what = "images" if ndim == 3 else "labels" if ndim == 1 else f"{ndim}-D data"
        expected = _IDX_MAGIC.get(ndim, 0x800 | ndim)
        raise _fail(p, f"expected an IDX file of {what} (magic 0x{expected:08x}), got magic 0x{magic:08x}")
    if raw[2] != 0x08:
        raise _fail(p, f"expected unsigned-byte IDX data (type 0x08), got type 0x{raw[2]:02x}")
    nd = raw[3]
    if not 1 <= nd <= 4 or len(raw) < 4 + 4 * nd:
        raise _fail(p, f"IDX header with {nd} dimensions: expected 1 to 4 and a complete header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd))
    body = len(raw) - 4 - 4 * nd
    if body != int(np.prod(dims)):
        raise _fail(p, f"IDX header announces shape {dims} ({int(np.prod(dims))} bytes) but the file holds {body} "
                       "bytes of data (truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims).copy()


def find_mnist_file(folder: str | Path, stem: str, name: str = "mnist") -> Path | None:
    """The first of ``stem`` or ``stem.gz`` in ``folder`` or its torchvision raw folder, else ``None``."""
    root = Path(folder)
    for d in (root, root / TORCHVISION_RAW.get(name, "MNIST/raw")):
        for fname in (stem, stem + ".gz"):
            if (d / fname).is_file():
                return d / fname
    return None


def mnist_files_present(folder: str | Path, name: str = "mnist") -> bool:
    """Whether all four IDX files of ``name`` are in ``folder`` (or its torchvision layout)."""
    return all(find_mnist_file(folder, s, name) is not None for pair in MNIST_FILES.values() for s in pair)


def mnist_hint(folder: str | Path, name: str = "mnist") -> str:
    """What to put where for ``name`` (mnist or fashion_mnist), as "put ... into ..."."""
    files = ", ".join(f"{s}.gz" for pair in MNIST_FILES.values() for s in pair)
    return f"put {files} (from {SOURCES.get(name, SOURCES['mnist'])}) into {str(folder)!r}"


def read_mnist(folder: str | Path, split: str = "train", name: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 1, H, W), labels int64 (N,)) of one split of MNIST-style IDX files.

    Looks in ``folder`` and in its torchvision layout (``folder/MNIST/raw`` for ``name="mnist"``,
    ``folder/FashionMNIST/raw`` for ``"fashion_mnist"``), raw or gzipped.
    """
    _check_split(split)
    if name not in TORCHVISION_RAW:
        raise ValueError(f"name = {name!r}: allowed values are {', '.join(map(repr, TORCHVISION_RAW))}")
    found = []
    for stem in MNIST_FILES[split]:
        p = find_mnist_file(folder, stem, name)
        if p is None:
            raise _fail(folder, f"no {stem}[.gz] here or in {TORCHVISION_RAW[name]}/: {mnist_hint(folder, name)}, "
                                "or set data.download = true with torchvision installed")
        found.append(p)
    images = read_idx(found[0], ndim=3)
    labels = read_idx(found[1], ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise _fail(found[1], f"{labels.shape[0]} labels, but {found[0].name} holds {images.shape[0]} images "
                              "(expected one label per image)")
    return images[:, None], labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python batches
# ---------------------------------------------------------------------------------------------


def cifar10_hint(path: str | Path) -> str:
    """What to put where for CIFAR-10."""
    return (f"put {CIFAR10_TARBALL} (from {SOURCES['cifar10']}) or its extracted folder {CIFAR10_FOLDER}/ into "
            f"{str(path)!r}")


def locate_cifar10(path: str | Path) -> Path:
    """The extracted batch folder or the tarball that ``path`` points at (the folder, its parent,
    the tarball or the tarball's folder)."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        if (p / "test_batch").is_file() or (p / "data_batch_1").is_file():
            return p
        if (p / CIFAR10_FOLDER).is_dir():
            return p / CIFAR10_FOLDER
        if (p / CIFAR10_TARBALL).is_file():
            return p / CIFAR10_TARBALL
    raise _fail(p, f"no CIFAR-10 batches found: {cifar10_hint(p)}, or set data.download = true with torchvision "
                   "installed")


def _cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        obj = pickle.load(io.BytesIO(raw), encoding="bytes")
    except Exception as exc:  # unpickling garbage can raise almost anything
        raise DataFileError(f"data.path = {where!r}: corrupt file, expected a pickled CIFAR-10 batch "
                            f"({_one_line(exc)})") from None
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        raise DataFileError(f"data.path = {where!r}: expected a CIFAR-10 batch (a dict with b'data' and b'labels')")
    data, labels = np.asarray(obj[b"data"]), np.asarray(obj[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataFileError(f"data.path = {where!r}: expected b'data' of shape (N, 3072) uint8, got "
                            f"{data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise DataFileError(f"data.path = {where!r}: {labels.size} labels for {data.shape[0]} images "
                            "(expected one label per image)")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_cifar10(path: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) of the CIFAR-10 python batches of a split
    (train: ``data_batch_1..5``; test: ``test_batch``), from the extracted folder
    (``cifar-10-batches-py/`` or its parent) or from ``cifar-10-python.tar.gz`` read in memory."""
    _check_split(split)
    where = locate_cifar10(path)
    names = CIFAR10_FILES[split]
    parts = []
    if where.is_dir():
        for n in names:
            f = where / n
            if not f.is_file():
                raise _fail(f, f"no such file: expected the CIFAR-10 batch {n} ({cifar10_hint(where)})")
            try:
                raw = f.read_bytes()
            except OSError as exc:
                raise _fail(f, f"unreadable ({_one_line(exc)})") from None
            parts.append(_cifar_batch(raw, str(f)))
    else:
        try:
            with tarfile.open(where, "r:*") as tar:
                members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                for n in names:
                    if n not in members:
                        raise _fail(where, f"the archive has no member {n} (expected the CIFAR-10 python "
                                           f"version, {CIFAR10_TARBALL})")
                    fobj = tar.extractfile(members[n])
                    parts.append(_cifar_batch(fobj.read(), f"{where}:{members[n].name}"))
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise _fail(where, f"corrupt file, expected the tarball {CIFAR10_TARBALL} ({_one_line(exc)})") from None
    images = np.concatenate([a for a, _ in parts])
    labels = np.concatenate([b for _, b in parts])
    return images, labels


# ---------------------------------------------------------------------------------------------
# Folders of PNG / JPEG files
# ---------------------------------------------------------------------------------------------


def image_files(path: str | Path) -> list[Path]:
    """The PNG/JPEG files under ``path`` (recursive), sorted by their relative path."""
    root = Path(path)
    if not root.is_dir():
        raise _fail(root, "no such folder (expected a folder of PNG/JPEG images)")
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise _fail(root, f"no image files found (expected files ending in {', '.join(IMAGE_SUFFIXES)})")
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _resize_crop(im, size: int):
    """Resize so the short side is ``size``, then centre-crop to size×size."""
    from PIL import Image

    w, h = im.size
    if (w, h) != (size, size):
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return im


def read_image_folder(path: str | Path, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(images uint8 (N, C, size, size), labels int64 (N,) or None) of the PNG/JPEG files under ``path``.

    Files are read in sorted order; C = 1 when every image is grayscale, else 3 (RGB). Each is resized
    so its short side is ``size`` and centre-cropped. When every image sits in a subfolder, the label
    is the index of its top-level subfolder in sorted order; when some sit in ``path`` itself, None.
    """
    from PIL import Image

    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"data.image_size must be a positive integer, got {size!r}")
    root = Path(path)
    files = image_files(root)
    bad = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
    modes = []
    for f in files:  # a first pass over the headers only: is every image grayscale?
        try:
            with Image.open(f) as im:
                modes.append(im.mode)
        except bad as exc:
            raise _fail(f, f"corrupt or unreadable image, expected a PNG or JPEG file ({_one_line(exc)})") from None
    gray = all(m in _GRAY_MODES for m in modes)
    arrays = []
    for f in files:
        try:
            with Image.open(f) as im:
                im = _resize_crop(im.convert("L" if gray else "RGB"), size)
                a = np.asarray(im, dtype=np.uint8)
        except bad as exc:
            raise _fail(f, f"corrupt or unreadable image, expected a PNG or JPEG file ({_one_line(exc)})") from None
        arrays.append(a[None] if gray else a.transpose(2, 0, 1))
    images = np.stack(arrays)
    tops = [f.relative_to(root).parts for f in files]
    if all(len(t) > 1 for t in tops):
        classes = sorted({t[0] for t in tops})
        labels = np.array([classes.index(t[0]) for t in tops], dtype=np.int64)
    else:
        labels = None
    return images, labels


# ---------------------------------------------------------------------------------------------
# .npz arrays
# ---------------------------------------------------------------------------------------------


def load_npz_nchw(path: str | Path, key: str = "x") -> np.ndarray:
    """Array ``key`` of an ``.npz`` file in NCHW layout, its dtype kept: NCHW is taken as it is,
    NHWC (1 or 3 in the last axis and not in axis 1) is transposed, (N, H, W) gets C = 1."""
    p = Path(path)
    if not p.is_file():
        raise _fail(p, "no such file (expected an .npz file of images)")
    try:
        with np.load(p, allow_pickle=False) as f:
            if key not in f.files:
                raise _fail(key, f"{str(p)!r} holds arrays {f.files}, not {key!r}", field="data.key")
            arr = np.asarray(f[key])
    except DataFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise _fail(p, f"not a readable .npz file ({_one_line(exc)})") from None
    if not (np.issubdtype(arr.dtype, np.number) and not np.issubdtype(arr.dtype, np.complexfloating)):
        raise _fail(p, f"array {key!r} must be real numbers, got {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if arr.shape[3] in (1, 3) and arr.shape[1] not in (1, 3):
            arr = arr.transpose(0, 3, 1, 2)
    else:
        raise _fail(p, f"array {key!r} has shape {arr.shape}: expected images (N, C, H, W), (N, H, W, C) or (N, H, W)")
    if arr.shape[0] < 1 or 0 in arr.shape:
        raise _fail(p, f"array {key!r} has shape {arr.shape}: expected at least one non-empty image")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise _fail(p, f"array {key!r} contains NaN or Inf")
    return np.ascontiguousarray(arr)


def read_npz_images(path: str | Path, key: str = "x") -> np.ndarray:
    """Array ``key`` of an ``.npz`` file as float32 images (N, C, H, W) (layouts as :func:`load_npz_nchw`):
    uint8 is scaled from [0, 255] to [-1, 1] (x / 127.5 − 1); other numbers are taken as given."""
    arr = load_npz_nchw(path, key)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return arr.astype(np.float32)


__all__ = [
    "CIFAR10_FILES",
    "MNIST_FILES",
    "cifar10_hint",
    "find_mnist_file",
    "image_files",
    "load_npz_nchw",
    "locate_cifar10",
    "mnist_files_present",
    "mnist_hint",
    "read_cifar10",
    "read_idx",
    "read_image_folder",
    "read_mnist",
    "read_npz_images",
]
