"""Trainers: one loop (:class:`Trainer`), several update rules (``TRAINERS``).

A new variant subclasses :class:`UpdateRule`, sets ``name`` and ``Config`` (a dataclass deriving
from :class:`scoregan.config.TrainerConfig`) and is listed in ``_RULES`` below; the loop does not
change.
"""

from __future__ import annotations

from scoregan._checks import closest
from scoregan.config import register_trainer_config
from scoregan.trainers.adversarial import FGAN, GMMN, LSGAN, MMDGAN, NSGAN, SGAN, WGANGP, AdversarialRule, HingeGAN
from scoregan.trainers.base import StepContext, UpdateRule
from scoregan.trainers.callbacks import Callback, StopAtStep
from scoregan.trainers.flow_matching import FlowMatching, OTFlowMatching
from scoregan.trainers.generator import GeneratorRule
from scoregan.trainers.kernel_flow import KernelFlowGAN
from scoregan.trainers.score_gan import ScoreGAN

_RULES: tuple[type[UpdateRule], ...] = (NSGAN, SGAN, LSGAN, HingeGAN, FGAN, WGANGP, MMDGAN, GMMN, ScoreGAN,
                                        KernelFlowGAN, FlowMatching, OTFlowMatching)
TRAINERS: dict[str, type[UpdateRule]] = {r.name: r for r in _RULES}
for _r in _RULES:
    register_trainer_config(_r.name, _r.Config)


def get_rule(name: str) -> type[UpdateRule]:
    if name not in TRAINERS:
        raise ValueError(f"trainer.name = {name!r} is not a trainer; allowed: {', '.join(TRAINERS)}{closest(name, TRAINERS)}")
    return TRAINERS[name]


def __getattr__(name: str):
    if name == "Trainer":  # lazy: the loop imports plotting and metrics
        from scoregan.trainers.loop import Trainer

        return Trainer
    raise AttributeError(name)


__all__ = ["AdversarialRule", "Callback", "FGAN", "FlowMatching", "GMMN", "GeneratorRule", "HingeGAN",
           "KernelFlowGAN", "LSGAN", "MMDGAN", "NSGAN", "OTFlowMatching", "SGAN", "ScoreGAN", "StepContext",
           "StopAtStep", "TRAINERS", "Trainer", "UpdateRule", "WGANGP", "get_rule"]
