"""Atomic checkpoints and the RNG states that make a resume bit-identical.

A checkpoint is written to a temporary file in the same directory, flushed and fsynced, then
renamed over the old one (and the directory fsynced), so a run killed at any moment, SIGKILL
included, leaves the previous complete checkpoint. Loading uses ``torch.load(weights_only=True)``:
a checkpoint holds only tensors and plain Python data, never pickled code.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated or corrupted; the message names the file."""


def mismatch_detail(exc: BaseException) -> str:
    """``load_state_dict``'s multi-line error on one line (every mismatched tensor and its shapes)."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically (temp file + fsync + rename + directory fsync), with the
    permissions of an ordinary file under the user's umask (a temporary file would be 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); a bad file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / garbage files
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupted or truncated and cannot be loaded "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else 'no detail'})"
        ) from None
    if not isinstance(obj, dict) or "step" not in obj or "rule" not in obj:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a scoregan checkpoint (missing 'step' or 'rule')")
    return obj


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every RNG the run touches: the named torch generators, torch's global CPU (and CUDA)
    generators, NumPy's and Python's, as tensors and plain data (loadable with weights_only)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "generators": {k: g.get_state() for k, g in generators.items()},
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    for k, g in generators.items():
        g.set_state(state["generators"][k])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate(_python_state_from_plain(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_plain(s: tuple) -> list:
    version, internal, gauss = s
    return [version, list(internal), gauss]


def _python_state_from_plain(p: list) -> tuple:
    version, internal, gauss = p
    return (version, tuple(internal), gauss)
