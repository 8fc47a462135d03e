"""Configs in one import: the schema (:mod:`scoregan.schema`) and the loader of the experiment layer
(:mod:`scoregan.experiment.config`). ``load_config(path, overrides)`` is the entry point; this module
belongs to the experiment layer (it knows the trainers), so library code below it imports
:mod:`scoregan.schema` instead."""

from scoregan.experiment.config import (
    DISCRIMINATOR_SIGNALS,
    cross_check,
    dump_config,
    from_dict,
    load_config,
    read_yaml,
    trainer_names,
)
from scoregan.schema import *  # noqa: F403  (the sections, ConfigError, spec, the signal names)
from scoregan.schema import apply_overrides, build_config, deep_merge, to_dict

__all__ = ["DISCRIMINATOR_SIGNALS", "apply_overrides", "build_config", "cross_check", "deep_merge", "dump_config",
           "from_dict", "load_config", "read_yaml", "to_dict", "trainer_names"]
