"""File-backed and bundled finite data sets: ``.npz`` arrays and scikit-learn's 8×8 digits."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from scoregan.data.base import ArrayDataset


class DataFileError(ValueError):
    """A data file that is missing or unreadable; the message names the file and the field."""


def npz_dataset(path: str, key: str = "x") -> ArrayDataset:
    """Points from array ``key`` of an ``.npz`` file, flattened to (N, d)."""
    p = Path(path)
    if not p.is_file():
        raise DataFileError(f"data.path = {path!r}: no such file")
    try:
        with np.load(p, allow_pickle=False) as f:
            if key not in f.files:
                raise DataFileError(f"data.key = {key!r}: {path!r} holds arrays {f.files}, not {key!r}")
            arr = np.asarray(f[key])
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, DataFileError):
            raise
        raise DataFileError(f"data.path = {path!r}: not a readable .npz file ({exc})") from None
    if arr.ndim < 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataFileError(f"data.path = {path!r}: array {key!r} must be numeric with shape (N, ...), got {arr.dtype} {arr.shape}")
    x = torch.from_numpy(arr.reshape(arr.shape[0], -1).astype(np.float32))
    if not torch.isfinite(x).all():
        raise DataFileError(f"data.path = {path!r}: array {key!r} contains NaN or Inf")
    return ArrayDataset("npz", x, {"path": str(path), "key": key})


def digits_dataset() -> ArrayDataset:
    """scikit-learn's bundled 8×8 digits (1,797 images) as 64-D vectors (N, 64) scaled to [-1, 1] (x/8 − 1),
    ``image_shape`` (1, 8, 8), ``labels`` the digits (N,)."""
    from sklearn.datasets import load_digits  # a heavy import, paid only by the digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.data.astype(np.float32)) / 8.0 - 1.0
    return ArrayDataset("digits", x, image_shape=(1, 8, 8), labels=torch.from_numpy(bunch.target.astype(np.int64)))
