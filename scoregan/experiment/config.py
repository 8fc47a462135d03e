"""Loading a whole experiment config: YAML files, ``--set`` overrides, the trainer registry, and the
checks that involve more than one field or the outside world.

``load_config(path, overrides)`` reads the YAML (following ``extends: other.yaml`` chains,
deep-merged), applies ``a.b=value`` overrides (values parsed as YAML scalars; an override that changes
``data.name`` drops the previous dataset's own fields, :data:`DATASET_FIELDS`, that came from the file
and were not set by an override themselves), types the tree with
the schema (:mod:`scoregan.schema`, the ``trainer`` section by the registry of
:mod:`scoregan.trainers`) and cross-checks it against the data sets and the chosen rule. Any problem
raises :class:`~scoregan.schema.ConfigError` with one line naming the field and the value.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from scoregan.data import validate_data_config
from scoregan.schema import (
    DIAGNOSTIC_STOPPING_SIGNALS,
    EVAL_STOPPING_SIGNALS,
    HELDOUT_STOPPING_SIGNALS,
    IMAGE_STOPPING_SIGNALS,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    apply_overrides,
    build_config,
    deep_merge,
    to_dict,
)
from scoregan.trainers import get_rule, trainer_configs

#: early-stopping signals read off the discriminator's input gradient or its values
DISCRIMINATOR_SIGNALS = ("combined", "dgrad_fake", "dgrad_ratio", "overfit")

#: the ``data`` fields that belong to one dataset (``scoregan.data.DATASETS``): a ``--set data.name=...``
#: that changes the dataset drops those the file set (see :func:`load_config`)
DATASET_FIELDS = ("radius", "std", "n_modes", "dim", "noise", "scale", "path", "key")


def trainer_names() -> list[str]:
    """The registered update rules, sorted."""
    return sorted(trainer_configs())


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a config file, following ``extends:`` (a path relative to the file), deep-merged. A file that
    is missing, a directory, not UTF-8 text, not YAML, empty or not a mapping is a one-line ConfigError."""
    path = Path(path)
    name = repr(str(path))
    if path.resolve() in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path.resolve()))
        raise ConfigError(f"config file {name}: its extends: chain loops ({chain})")
    if path.is_dir():
        raise ConfigError(f"config file {name} is a directory, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {name} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {name} is not a text file (not UTF-8): is it a YAML config?") from None
    except OSError as exc:
        raise ConfigError(f"config file {name} cannot be read: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {name} is not valid YAML: {_yaml_problem(exc)}") from None
    if raw is None:
        raise ConfigError(f"config file {name} is empty: write the fields to change (see --print-config), or "
                          "give no CONFIG for the embedded defaults")
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {name} must hold a mapping of sections, got {type(raw).__name__}")
    parent = raw.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str) or not parent.strip():
            raise ConfigError(f"config file {name}: extends = {parent!r}: expected the path of another config "
                              "file (relative to this one)")
        base = read_yaml(path.parent / parent, (*_seen, path.resolve()))
        raw = deep_merge(base, raw)
    return raw


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where (line, column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def override_keys(overrides: list[str] | None) -> dict[str, str]:
    """The ``key.path`` -> value text of ``a.b=value`` overrides (the last one of a key wins)."""
    out = {}
    for item in overrides or []:
        if "=" in item:
            key, text = item.split("=", 1)
            out[key.strip()] = text
    return out


def drop_stale_data_fields(raw: dict, overrides: list[str] | None) -> dict:
    """``raw`` (a file's mapping) without its :data:`DATASET_FIELDS` when an override changes
    ``data.name``, except those an override sets itself: 8 Gaussians' radius does not fit an npz file."""
    keys = override_keys(overrides)
    data = raw.get("data")
    if "data.name" not in keys or not isinstance(data, dict):
        return raw
    try:
        new = yaml.safe_load(keys["data.name"])
    except yaml.YAMLError:
        new = keys["data.name"]
    if new == data.get("name", DataConfig.name):
        return raw
    kept = {k: v for k, v in data.items() if k not in DATASET_FIELDS or f"data.{k}" in keys}
    return {**raw, "data": kept}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load and validate a config (``path=None``: the embedded defaults, the quick-start job). An override
    of ``data.name`` to another dataset resets the file's dataset fields (:func:`drop_stale_data_fields`)."""
    raw = read_yaml(path) if path is not None else {}
    return from_dict(apply_overrides(drop_stale_data_fields(raw, overrides), overrides))


def from_dict(raw: dict) -> ExperimentConfig:
    """Build a validated :class:`ExperimentConfig` from a plain mapping."""
    cfg = build_config(raw, trainer_configs())
    cross_check(cfg)
    return cfg


def dump_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write ``cfg`` as YAML (every field, resolved)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def absolute_paths(cfg: Any) -> None:
    """Make every ``path=True`` field of the config (``data.path``, ``trainer.source_run``, ...) absolute,
    in place: a run's config.yaml then reads the same from any working directory."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            absolute_paths(value)
        elif f.metadata.get("path") and isinstance(value, str):
            setattr(cfg, f.name, str(Path(value).resolve()))


def _check_diagnosable(cfg: ExperimentConfig) -> None:
    """Diagnostics need a generator G(z); the discriminator signals a scalar discriminator."""
    name, rule = cfg.trainer.name, get_rule(cfg.trainer.name)
    if cfg.diagnostics.every > 0 and not rule.has_generator:
        raise ConfigError(f"diagnostics.every = {cfg.diagnostics.every}: trainer {name!r} has no generator network "
                          "G(z) to diagnose; set diagnostics.every = 0")
    es = cfg.early_stopping
    if es.enabled and es.metric in DISCRIMINATOR_SIGNALS and rule.discriminator_link is None:
        raise ConfigError(f"early_stopping.metric = {es.metric!r} is read off the discriminator, and trainer {name!r} "
                          "has no scalar one; use 'steepness' or an evaluation signal (e.g. 'w2')")


def _check_source_run(cfg: ExperimentConfig) -> None:
    source_run = getattr(cfg.trainer, "source_run", None)
    if source_run is not None and not (Path(source_run) / "config.yaml").is_file():
        raise ConfigError(f"trainer.source_run = {source_run!r}: not a run directory (no config.yaml)")


def cross_check(cfg: ExperimentConfig) -> None:
    """Checks that involve more than one field or the outside world (files, data sets, the rule)."""
    validate_data_config(cfg.data)
    _check_source_run(cfg)
    if getattr(cfg.trainer, "unbiased", False) and cfg.train.batch_size < 2:
        raise ConfigError(f"train.batch_size = {cfg.train.batch_size}: the unbiased MMD² of trainer "
                          f"{cfg.trainer.name!r} needs at least 2 points per batch (or trainer.unbiased = false)")
    es = cfg.early_stopping
    if es.enabled and es.metric in DIAGNOSTIC_STOPPING_SIGNALS and cfg.diagnostics.every == 0:
        raise ConfigError(f"early_stopping.metric = {es.metric!r} needs diagnostics: diagnostics.every = 0 "
                          "turns them off; set it > 0 (e.g. 100)")
    if es.enabled and es.metric == "overfit" and cfg.data.holdout == 0:
        raise ConfigError("early_stopping.metric = 'overfit' compares the discriminator on training and held-out "
                          "points: set data.holdout > 0 (e.g. 300) to keep points out of training")
    if es.enabled and es.metric in HELDOUT_STOPPING_SIGNALS and cfg.data.holdout == 0:
        raise ConfigError(f"early_stopping.metric = {es.metric!r} is measured against held-out points: set "
                          "data.holdout > 0 (e.g. 300) to keep points out of training")
    if es.enabled and es.metric in IMAGE_STOPPING_SIGNALS and not cfg.eval.image_metrics:
        raise ConfigError(f"early_stopping.metric = {es.metric!r} is an image metric: set eval.image_metrics = true")
    if es.enabled and es.metric in EVAL_STOPPING_SIGNALS and es.metric not in IMAGE_STOPPING_SIGNALS:
        distance = es.metric.removesuffix("_heldout")
        if distance not in cfg.eval.distances:
            raise ConfigError(f"early_stopping.metric = {es.metric!r} is read from the evaluation, but "
                              f"eval.distances = {cfg.eval.distances!r} leaves out {distance!r}: add it")
    _check_diagnosable(cfg)
    if len(set(cfg.eval.distances)) != len(cfg.eval.distances):
        raise ConfigError(f"eval.distances = {cfg.eval.distances!r}: a distance is listed twice")
    dev = cfg.train.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError(f"train.device = {dev!r}: allowed values are 'auto', 'cpu', 'cuda', 'cuda:N'")
