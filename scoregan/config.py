"""Configs in one import: the schema (:mod:`scoregan.schema`: the typed sections, ``ConfigError``, the
signal names) and the loader of the experiment layer (:mod:`scoregan.experiment.config`:
``load_config``, ``from_dict``, ``dump_config``). This module belongs to the experiment layer (the
loader knows the trainers); library code below it imports :mod:`scoregan.schema` instead."""

from scoregan.experiment.config import (
    DISCRIMINATOR_SIGNALS,
    absolute_paths,
    cross_check,
    dump_config,
    from_dict,
    load_config,
    read_yaml,
    trainer_names,
)
from scoregan.schema import *  # noqa: F403
from scoregan.schema import __all__ as _schema_names

__all__ = [*_schema_names, "DISCRIMINATOR_SIGNALS", "absolute_paths", "cross_check", "dump_config", "from_dict",
           "load_config", "read_yaml", "trainer_names"]
