"""Checkpoints (scoregan.checkpoint): atomic writes with the user's umask, weights-only loading."""

from __future__ import annotations

import os
import stat

import torch

from scoregan.checkpoint import current_umask, load_checkpoint, save_atomic


def test_checkpoints_follow_the_umask_not_the_temporary_files_0600(tmp_path):
    old = os.umask(0o022)
    try:
        assert current_umask() == 0o022
        save_atomic({"step": 1, "rule": {"w": torch.ones(2)}}, tmp_path / "a.pt")
        assert stat.S_IMODE((tmp_path / "a.pt").stat().st_mode) == 0o644
        os.umask(0o077)
        save_atomic({"w": torch.ones(2)}, tmp_path / "b.pt")
        assert stat.S_IMODE((tmp_path / "b.pt").stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert torch.equal(load_checkpoint(tmp_path / "a.pt")["rule"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
