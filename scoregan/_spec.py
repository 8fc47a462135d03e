"""Config fields: the error type, the field helper with validation metadata, and the size limits.

The floor of the config schema (``scoregan.schema`` and ``scoregan.schema_models`` build on it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """A config problem, reported before any work starts."""


#: Upper bounds of the fields that size work or memory (a typo of a few zeros is refused, not allocated):
#: seeds fit a signed 64-bit integer (torch's generators; numpy gets ``seed % 2**32``); any integer field
#: at all must fit one too.
SEED_MAX = 2**63 - 1
MAX_WIDTH = 8192  # a hidden layer (a 8192² linear layer is 67M parameters)
MAX_DEPTH = 64  # hidden layers of one network
MAX_BATCH = 2**20  # points per batch / evaluation draw
MAX_INT = 2**63 - 1


def spec(default: Any = dataclasses.MISSING, *, help: str = "", min: float | None = None,
         max: float | None = None, exclusive_min: bool = False, exclusive_max: bool = False,
         choices: tuple | None = None, default_factory: Any = dataclasses.MISSING, path: bool = False,
         max_len: int | None = None, allow_inf: bool = False, allow_empty: bool = False) -> Any:
    """A dataclass field with validation metadata (range, choices), a one-line help, and ``path=True``
    for a file or directory read relative to the working directory (made absolute in a run's config).
    Floats must be finite unless ``allow_inf`` (NaN never passes); strings must be non-empty unless
    ``allow_empty``; ``max_len`` bounds the length of a list."""
    meta = {"help": help, "min": min, "max": max, "exclusive_min": exclusive_min, "exclusive_max": exclusive_max,
            "choices": choices, "path": path, "max_len": max_len, "allow_inf": allow_inf, "allow_empty": allow_empty}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)
