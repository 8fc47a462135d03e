"""Where the shipped configs live: ``configs/`` of a source checkout, or the copy a wheel installs as
package data (``scoregan/configs``), so ``scoregan bench toy`` and the recipes find them either way."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    """The directory holding ``toy/<target>-<trainer>.yaml`` and ``toy/base/``."""
    installed = _PACKAGE / "configs"  # a wheel maps the repository's configs/ here (pyproject.toml)
    return installed if installed.is_dir() else _PACKAGE.parent / "configs"
