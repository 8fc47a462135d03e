"""Shared fixtures: small, fast configs for loop tests."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "disabled")
# caches (fitted data scores, image-metric classifiers) of this test session only, never the user's
os.environ["SCOREGAN_CACHE"] = tempfile.mkdtemp(prefix="scoregan-test-cache-")

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


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Small tensors on a 2-core CI machine run much faster on one intra-op thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
