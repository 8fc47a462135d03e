"""Trainers: update rules only, each registered beside its class (``TRAINERS``).

A new variant subclasses :class:`UpdateRule` (or :class:`GeneratorRule` for a one-step generator),
sets ``name`` and ``Config`` (a dataclass deriving from :class:`scoregan.schema.TrainerConfig`) and
is decorated with :func:`register_trainer`; the loop (``scoregan.experiment.loop``) does not change.
The rules and their math: docs/theory.md §9.
"""

from __future__ import annotations

from scoregan.trainers.adversarial import (
    FGAN,
    GMMN,
    LSGAN,
    MMDGAN,
    WGANGP,
    AdversarialRule,
    HingeGAN,
    NonSaturatingGAN,
    SaturatingGAN,
)
from scoregan.trainers.base import SourceGenerator, StepContext, UpdateRule
from scoregan.trainers.dg import DiscriminatorGuidanceRule, ScoreSource
from scoregan.trainers.dsm import DenoisingScoreMatching
from scoregan.trainers.flow_matching import FlowMatching, OTFlowMatching
from scoregan.trainers.generator import GeneratorRule
from scoregan.trainers.kernel_flow import KernelFlowGAN
from scoregan.trainers.registry import TRAINERS, get_rule, register_trainer, trainer_configs
from scoregan.trainers.score_gan import ScoreGAN

__all__ = ["AdversarialRule", "DenoisingScoreMatching", "DiscriminatorGuidanceRule", "FGAN", "FlowMatching", "GMMN",
           "GeneratorRule", "HingeGAN", "KernelFlowGAN", "LSGAN", "MMDGAN", "NonSaturatingGAN", "OTFlowMatching",
           "SaturatingGAN", "ScoreGAN", "ScoreSource", "SourceGenerator", "StepContext", "TRAINERS", "UpdateRule",
           "WGANGP", "get_rule", "register_trainer", "trainer_configs"]
