"""The trainer registry: each update rule registers itself beside its class, its name written once.

    @register_trainer
    class KernelFlowGAN(GeneratorRule):
        name = "kernel-flow"
        Config = KernelFlowConfig

``TRAINERS`` maps names to rule classes, ``trainer_configs()`` names to their params dataclasses
(what the config schema needs to type the ``trainer`` section).
"""

from __future__ import annotations

from typing import TypeVar

from scoregan._checks import closest
from scoregan.trainers.base import UpdateRule

TRAINERS: dict[str, type[UpdateRule]] = {}

R = TypeVar("R", bound=type[UpdateRule])


def register_trainer(cls: R) -> R:
    """Class decorator: list ``cls`` under ``cls.name`` (a second rule of the same name is a bug)."""
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} must set a class attribute `name` to be registered")
    if name in TRAINERS and TRAINERS[name] is not cls:
        raise TypeError(f"trainer name {name!r} is taken by {TRAINERS[name].__name__}")
    TRAINERS[name] = cls
    return cls


def get_rule(name: str) -> type[UpdateRule]:
    """The rule class registered as ``name`` (ValueError naming the allowed ones otherwise)."""
    if name not in TRAINERS:
        raise ValueError(f"trainer.name = {name!r} is not a trainer; allowed: {', '.join(TRAINERS)}"
                         f"{closest(name, TRAINERS)}")
    return TRAINERS[name]


def trainer_configs() -> dict[str, type]:
    """Name -> the rule's params dataclass (``Rule.Config``), for :func:`scoregan.schema.build_config`."""
    return {name: rule.Config for name, rule in TRAINERS.items()}
