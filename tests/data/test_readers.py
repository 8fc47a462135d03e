"""Readers of image files: tiny files in the real formats (IDX, CIFAR-10 python batches, PNG/JPEG,
.npz) round-trip exactly, and missing, misshapen or corrupt files fail with one line naming them."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from scoregan.data import DataFileError, read_cifar10, read_idx, read_image_folder, read_mnist, read_npz_images

# ---------------------------------------------------------------------------------------------
# Writers of the real formats (also used by test_images.py)
# ---------------------------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, big-endian dims, then the data."""
    arr = np.asarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return head + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray) -> Path:
    data = idx_bytes(arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def mnist_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    return images, rng.integers(0, 10, size=n).astype(np.uint8)


def write_mnist(folder: Path, n_train: int = 10, n_test: int = 6, gz: bool = True) -> dict:
    """The four MNIST IDX files in ``folder``; returns the arrays written."""
    ext = ".gz" if gz else ""
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x, y = mnist_arrays(n, seed=n + len(prefix))
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", y)
        out[split] = (x, y)
    return out


def cifar_batches(n: int = 4) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(1)
    out = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, size=(n + i % 2, 3072), dtype=np.uint8)
        out[name] = (data, [int(v) for v in rng.integers(0, 10, size=n + i % 2)])
    return out


def _pickled(data: np.ndarray, labels: list[int]) -> bytes:
    return pickle.dumps({b"batch_label": b"x", b"data": data, b"labels": labels, b"filenames": []})


def write_cifar_folder(root: Path, batches: dict) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        (folder / name).write_bytes(_pickled(data, labels))
    return folder


def write_cifar_tarball(path: Path, batches: dict) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, (data, labels) in batches.items():
            raw = _pickled(data, labels)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def cifar_expected(batches: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = [f"data_batch_{k}" for k in range(1, 6)] if split == "train" else ["test_batch"]
    x = np.concatenate([batches[n][0] for n in names]).reshape(-1, 3, 32, 32)
    y = np.concatenate([batches[n][1] for n in names]).astype(np.int64)
    return x, y


def write_png(path: Path, arr: np.ndarray, fmt: str | None = None) -> Path:
    """``arr`` (H, W) grayscale or (H, W, 3) RGB uint8 saved with Pillow."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


# ---------------------------------------------------------------------------------------------
# IDX / MNIST
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_round_trips(tmp_path, gz):
    written = write_mnist(tmp_path, gz=gz)
    for split in ("train", "test"):
        x, y = read_mnist(tmp_path, split)
        assert x.dtype == np.uint8 and x.shape == (written[split][0].shape[0], 1, 28, 28)
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x[:, 0], written[split][0])
        np.testing.assert_array_equal(y, written[split][1])


def test_mnist_torchvision_layouts(tmp_path):
    written = write_mnist(tmp_path / "MNIST" / "raw")
    fashion = write_mnist(tmp_path / "FashionMNIST" / "raw", n_train=12)
    np.testing.assert_array_equal(read_mnist(tmp_path, "train")[0][:, 0], written["train"][0])
    np.testing.assert_array_equal(read_mnist(tmp_path, "train", name="fashion_mnist")[0][:, 0], fashion["train"][0])


def test_read_idx_shapes_and_header_errors(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a.idx", arr)), arr)
    labels = write_idx(tmp_path / "l.idx", np.arange(5))
    with pytest.raises(DataFileError, match=r"data\.path = '.*l\.idx': expected an IDX file of images "
                                            r"\(magic 0x00000803\), got magic 0x00000801"):
        read_idx(labels, ndim=3)
    short = tmp_path / "short.idx"
    short.write_bytes(idx_bytes(arr)[:-5])
    with pytest.raises(DataFileError, match=r"short\.idx.*\(2, 3, 4\).*truncated"):
        read_idx(short)
    (tmp_path / "junk.idx").write_bytes(b"\x12\x34garbage")
    with pytest.raises(DataFileError, match=r"junk\.idx': not an IDX file"):
        read_idx(tmp_path / "junk.idx")


def test_mnist_missing_file_names_it_and_the_fix(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    read_mnist(tmp_path, "train")
    with pytest.raises(DataFileError) as info:
        read_mnist(tmp_path, "test")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"data.path = {str(tmp_path)!r}")
    assert "no t10k-labels-idx1-ubyte[.gz]" in msg and "train-images-idx3-ubyte.gz" in msg and "yann.lecun.com" in msg


def test_mnist_label_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(9, dtype=np.uint8))
    with pytest.raises(DataFileError, match=r"train-labels-idx1-ubyte\.gz': 9 labels, but train-images-idx3-ubyte"
                                            r"\.gz holds 10 images"):
        read_mnist(tmp_path, "train")


def test_mnist_corrupt_gzip(tmp_path):
    write_mnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte\.gz': corrupt file, expected a gzipped IDX"):
        read_mnist(tmp_path, "train")


# ---------------------------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------------------------


def test_cifar10_folder_parent_and_tarball_round_trip(tmp_path):
    batches = cifar_batches()
    folder = write_cifar_folder(tmp_path / "a", batches)
    tarball = write_cifar_tarball(tmp_path / "cifar-10-python.tar.gz", batches)
    for split in ("train", "test"):
        want_x, want_y = cifar_expected(batches, split)
        for where in (folder, folder.parent, tarball, tmp_path):
            x, y = read_cifar10(where, split)
            assert x.dtype == np.uint8 and x.shape == (len(want_y), 3, 32, 32) and y.dtype == np.int64
            np.testing.assert_array_equal(x, want_x)
            np.testing.assert_array_equal(y, want_y)
    # channel-major rows: the first 1024 bytes of a row are the red plane
    np.testing.assert_array_equal(read_cifar10(folder, "test")[0][0, 0].ravel(), batches["test_batch"][0][0, :1024])


def test_cifar10_missing_wrong_and_corrupt(tmp_path):
    with pytest.raises(DataFileError, match=r"no CIFAR-10 batches found: put cifar-10-python\.tar\.gz"):
        read_cifar10(tmp_path / "nowhere", "train")
    batches = cifar_batches()
    folder = write_cifar_folder(tmp_path, batches)
    (folder / "data_batch_3").unlink()
    read_cifar10(folder, "test")
    with pytest.raises(DataFileError, match=r"data_batch_3': no such file"):
        read_cifar10(folder, "train")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataFileError, match=r"test_batch': expected b'data' of shape \(N, 3072\) uint8"):
        read_cifar10(folder, "test")
    (folder / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataFileError, match=r"test_batch': corrupt file"):
        read_cifar10(folder, "test")
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(write_cifar_tarball(tmp_path / "ok.tar.gz", batches).read_bytes()[:300])
    with pytest.raises(DataFileError, match=r"bad\.tar\.gz': corrupt file"):
        read_cifar10(bad, "train")


# ---------------------------------------------------------------------------------------------
# Image folders
# ---------------------------------------------------------------------------------------------


def test_image_folder_rgb_with_classes_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    g = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
    write_png(tmp_path / "cats" / "1.png", a)
    write_png(tmp_path / "dogs" / "sub" / "0.png", b)
    write_png(tmp_path / "ants" / "x.png", g)  # grayscale among RGB: converted to RGB
    (tmp_path / "ants" / "notes.txt").write_text("not an image")
    x, y = read_image_folder(tmp_path, 8)
    assert x.dtype == np.uint8 and x.shape == (3, 3, 8, 8)
    np.testing.assert_array_equal(y, [0, 1, 2])  # ants, cats, dogs
    np.testing.assert_array_equal(x[0], np.stack([g, g, g]))
    np.testing.assert_array_equal(x[1], a.transpose(2, 0, 1))
    np.testing.assert_array_equal(x[2], b.transpose(2, 0, 1))


def test_image_folder_grayscale_flat_resize_and_crop(tmp_path):
    wide = np.zeros((4, 8), dtype=np.uint8)
    wide[:, 2:6] = 255  # the centre 4×4 is white
    write_png(tmp_path / "a.png", wide)
    write_png(tmp_path / "b.jpg", np.full((6, 6), 128, dtype=np.uint8), fmt="JPEG")
    x, y = read_image_folder(tmp_path, 4)
    assert y is None and x.shape == (2, 1, 4, 4)
    assert (x[0] == 255).all()  # short side already 4: only the centre crop
    assert np.abs(x[1].astype(int) - 128).max() <= 2
    x2, _ = read_image_folder(tmp_path, 2)
    assert x2.shape == (2, 1, 2, 2)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataFileError, match=r"'.*nothere': no such folder"):
        read_image_folder(tmp_path / "nothere", 8)
    with pytest.raises(DataFileError, match="no image files found"):
        read_image_folder(tmp_path, 8)
    write_png(tmp_path / "ok.png", np.zeros((4, 4), dtype=np.uint8))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataFileError, match=r"data\.path = '.*broken\.png': corrupt or unreadable image"):
        read_image_folder(tmp_path, 4)


# ---------------------------------------------------------------------------------------------
# .npz
# ---------------------------------------------------------------------------------------------


def test_npz_layouts(tmp_path):
    rng = np.random.default_rng(0)
    nchw = rng.integers(0, 256, size=(5, 3, 4, 6), dtype=np.uint8)
    nchw[0, 0, 0, :2] = [0, 255]
    np.savez(tmp_path / "a.npz", x=nchw, nhwc=nchw.transpose(0, 2, 3, 1), nhw=nchw[:, 0],
             f=nchw.astype(np.float32) / 100)
    x = read_npz_images(tmp_path / "a.npz")
    assert x.dtype == np.float32 and x.shape == (5, 3, 4, 6)
    assert x[0, 0, 0, 0] == -1.0 and x[0, 0, 0, 1] == 1.0
    np.testing.assert_allclose(x, nchw / 127.5 - 1, atol=1e-6)
    np.testing.assert_array_equal(read_npz_images(tmp_path / "a.npz", "nhwc"), x)
    np.testing.assert_array_equal(read_npz_images(tmp_path / "a.npz", "nhw"), x[:, :1])
    np.testing.assert_array_equal(read_npz_images(tmp_path / "a.npz", "f"), nchw.astype(np.float32) / 100)


def test_npz_errors(tmp_path):
    with pytest.raises(DataFileError, match=r"data\.path = '.*none\.npz': no such file"):
        read_npz_images(tmp_path / "none.npz")
    np.savez(tmp_path / "b.npz", x=np.zeros((5, 6)), y=np.zeros((1, 2, 3, 4, 5)))
    with pytest.raises(DataFileError, match=r"b\.npz': array 'x' has shape \(5, 6\): expected images"):
        read_npz_images(tmp_path / "b.npz")
    with pytest.raises(DataFileError, match=r"array 'y' has shape"):
        read_npz_images(tmp_path / "b.npz", "y")
    with pytest.raises(DataFileError, match=r"data\.key = 'z'"):
        read_npz_images(tmp_path / "b.npz", "z")
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataFileError, match=r"c\.npz': not a readable \.npz file"):
        read_npz_images(tmp_path / "c.npz")
