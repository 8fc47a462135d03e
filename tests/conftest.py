"""Shared fixtures: small, fast configs for loop tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "disabled")

TINY = [
    "tracking.mode=disabled",
    "train.progress=false",
    "model.generator.hidden=[32, 32]",
    "model.discriminator.hidden=[32, 32]",
    "train.batch_size=64",
    "eval.n_samples=200",
    "eval.figures=false",
]


@pytest.fixture
def tiny_overrides():
    """Overrides that make any toy config train in a fraction of a second per 10 steps."""
    return list(TINY)
