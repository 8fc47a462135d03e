"""The config schema: typed dataclasses for every section of an experiment, and their validation.

This module is the floor of the package: it imports nothing else from scoregan but ``_checks``.
A config is a nested mapping whose sections mirror :class:`ExperimentConfig`; every field is typed,
and ranges and choices live in the field's metadata (:func:`spec`). :func:`build_config` turns a
plain mapping into a validated :class:`ExperimentConfig`; any problem raises :class:`ConfigError`
with one message naming the field, the value and what is allowed (with a did-you-mean for typos).

The ``trainer`` section is a tagged union: its ``name`` selects an update rule, and the caller
passes the mapping name -> params dataclass (the trainer registry, ``scoregan.trainers``) that
types the remaining keys. Reading YAML files and the checks that need the data sets or the
trainers live in the experiment layer (``scoregan.experiment.config``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from scoregan._checks import closest
from scoregan._spec import MAX_BATCH, MAX_DEPTH, MAX_INT, MAX_WIDTH, SEED_MAX, ConfigError, spec
from scoregan.schema_models import ConvConfig, ModelConfig, NetConfig, UNetConfig


__all__ = [
    "ConfigError",
    "ConvConfig",
    "DEFAULT_TRAINER",
    "DIAGNOSTIC_STOPPING_SIGNALS",
    "DataConfig",
    "DiagnosticsConfig",
    "EARLY_STOPPING_SIGNALS",
    "EVAL_DISTANCES",
    "EVAL_STOPPING_SIGNALS",
    "EarlyStoppingConfig",
    "EvalConfig",
    "ExperimentConfig",
    "HELDOUT_STOPPING_SIGNALS",
    "IMAGE_STOPPING_SIGNALS",
    "MAX_BATCH",
    "MAX_DEPTH",
    "MAX_WIDTH",
    "ModelConfig",
    "NetConfig",
    "OptimConfig",
    "SEED_MAX",
    "TrackingConfig",
    "TrainConfig",
    "TrainerConfig",
    "UNetConfig",
    "apply_overrides",
    "build_config",
    "deep_merge",
    "spec",
    "to_dict",
]


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """The target distribution. Parameters left ``null`` take the dataset's documented default."""

    name: str = spec("8gaussians", help="dataset name (see `scoregan.data.DATASETS`)")
    radius: float | None = spec(None, min=0, exclusive_min=True, help="mixture radius / grid half-width")
    std: float | None = spec(None, min=0, exclusive_min=True, help="per-coordinate std of each mode")
    n_modes: int | None = spec(None, min=1, max=10_000, help="number of mixture modes")
    dim: int | None = spec(None, min=1, max=100_000, help="data dimension (n-D mixtures)")
    noise: float | None = spec(None, min=0, help="noise level of the non-mixture toys")
    scale: float | None = spec(None, min=0, exclusive_min=True, help="overall scale of the non-mixture toys")
    path: str | None = spec(None, path=True, help="file or folder of file-backed datasets (npz, IDX, CIFAR, images)")
    layout: str = spec("flat", choices=("flat", "image"), help="digits: 64-D vectors (flat) or 1×8×8 images")
    download: bool = spec(False, help="fetch mnist / fashion_mnist / cifar10 into data.path with torchvision")
    flip: bool = spec(False, help="random horizontal flips of training images (cifar10, image_folder)")
    image_size: int | None = spec(None, min=4, max=1024, help="image_folder: resize and centre-crop to this size")
    key: str = spec("x", help="array name inside an .npz file")
    seed: int = spec(0, min=0, max=SEED_MAX, help="seed of the dataset's own randomness (mode layout, finite sets)")
    holdout: int = spec(0, min=0, max=MAX_BATCH, help="points of a finite dataset (digits, npz) kept out of training, chosen "
                                       "with data.seed; the diagnostics measure the discriminator on them")


@dataclass
class OptimConfig:
    """Adam for both players."""

    lr_g: float = spec(2e-3, min=0, exclusive_min=True, help="generator learning rate")
    lr_d: float = spec(2e-4, min=0, exclusive_min=True, help="discriminator learning rate")
    beta1: float = spec(0.5, min=0, max=1, exclusive_max=True)
    beta2: float = spec(0.999, min=0, max=1, exclusive_max=True)
    weight_decay: float = spec(0.0, min=0)
    grad_clip: float | None = spec(None, min=0, exclusive_min=True, help="clip global grad norm")


@dataclass
class TrainConfig:
    """The loop."""

    steps: int = spec(3000, min=1, help="generator updates")
    batch_size: int = spec(128, min=1, max=MAX_BATCH)
    seed: int = spec(0, min=0, max=SEED_MAX)
    device: str = spec("auto", help="auto | cpu | cuda | cuda:N")
    dtype: str = spec("float32", choices=("float32", "float64"))
    threads: int = spec(1, min=0, max=1024, help="CPU intra-op threads (small networks run fastest on one; 0 = torch's default)")
    checkpoint_every: int = spec(1000, min=1, help="steps between checkpoints (and one at the end)")
    eval_every: int = spec(1000, min=1, help="steps between evaluations and figures")
    log_every: int = spec(25, min=1, help="steps between loss lines in metrics.jsonl")
    progress: bool = spec(True, help="show a progress bar")
    nonfinite: str = spec("stop", choices=("stop", "skip"),
                          help="at a NaN or infinite loss or weight: stop (the last finite checkpoint is kept) or "
                               "skip the step (undo it and go on; costs a copy of the networks per step)")
    precision: str = spec("fp32", choices=("fp32", "bf16"),
                          help="bf16: the training steps under bfloat16 autocast (weights and optimiser states stay "
                               "float32; bfloat16 needs no loss scaling); evaluation runs in float32")
    compile: bool = spec(False, help="torch.compile every network (CUDA only: Triton kernels)")


#: The distances an evaluation can compute (``scoregan.metrics.toy_report``, ``eval.distances``); a
#: data set with held-out points adds each against them as ``<name>_heldout`` (``scoregan.experiment.evaluation``).
EVAL_DISTANCES = ("w2", "sliced_w2", "mmd2", "energy", "fd")


@dataclass
class EvalConfig:
    """Periodic and final evaluation."""

    n_samples: int = spec(2000, min=2, max=100_000, help="generated samples per evaluation")
    seed: int = spec(1234, min=0, max=SEED_MAX, help="seed of the evaluation draws (fixed, separate from training)")
    figures: bool = spec(True, help="write sample figures")
    distances: list[str] = spec(default_factory=lambda: list(EVAL_DISTANCES), choices=EVAL_DISTANCES,
                                help="distances each evaluation computes (exact W2 costs the most: about a "
                                     "second at 2,000 samples); mode statistics are always added")
    image_metrics: bool = spec(True, help="labelled image data: FD, KID ± s.e., precision and recall in the features "
                                          "of a cached classifier, against the held-out images (img_* keys)")
    inception: str | None = spec(None, path=True, help="local Inception-v3 weights: FID and KID through torch-fidelity")


@dataclass
class TrackingConfig:
    """Experiment tracking: wandb plus a local metrics.jsonl that is always written."""

    mode: str = spec("offline", choices=("offline", "online", "disabled"))
    project: str = spec("scoregan")
    entity: str | None = spec(None)
    tags: list[str] = spec(default_factory=list)


# The early-stopping signals of scoregan.experiment.early_stopping (diagnostics first, then evaluation).
DIAGNOSTIC_STOPPING_SIGNALS = ("combined", "steepness", "dgrad_fake", "dgrad_ratio", "overfit")  # need diagnostics
HELDOUT_STOPPING_SIGNALS = tuple(f"{k}_heldout" for k in EVAL_DISTANCES)  # validation signals: need data.holdout
IMAGE_STOPPING_SIGNALS = ("img_fd", "img_kid")  # image data: classifier-feature FD / KID against held-out images
EVAL_STOPPING_SIGNALS = (*EVAL_DISTANCES, *HELDOUT_STOPPING_SIGNALS, *IMAGE_STOPPING_SIGNALS)  # from the evaluation
EARLY_STOPPING_SIGNALS = (*DIAGNOSTIC_STOPPING_SIGNALS, *EVAL_STOPPING_SIGNALS)


@dataclass
class DiagnosticsConfig:
    """Gradient diagnostics every ``every`` steps (config section ``diagnostics``)."""

    every: int = spec(0, min=0, help="steps between diagnostics (0 = off; 100 is a good interval)")
    batch: int = spec(256, min=1, max=MAX_BATCH, help="fixed latents (and real points) per measurement")
    iters: int = spec(64, min=1, help="cap on Jacobian products per steepness estimate")
    tol: float = spec(1e-3, min=0, exclusive_min=True, help="relative residual tolerance of the steepness solver")
    method: str = spec("lanczos", choices=("lanczos", "power"), help="steepness eigen-solver")
    seed: int = spec(4321, min=0, max=SEED_MAX, help="seed of the fixed latents, real points and start vectors")
    network: str = spec("sampled", choices=("sampled", "trained"),
                        help="the generator measured: the one samples come from (its EMA copy when the trainer "
                             "keeps one) or the one being trained")


@dataclass
class EarlyStoppingConfig:
    """Early stopping at the turn from refining to collapsing (config section ``early_stopping``)."""

    enabled: bool = spec(False, help="watch the signal, save checkpoints/best.pt, stop at the turn")
    metric: str = spec("combined", choices=EARLY_STOPPING_SIGNALS,
                       help="signal: combined | steepness | dgrad_fake | dgrad_ratio | overfit (diagnostics; "
                            "overfit needs data.holdout > 0); w2 | sliced_w2 | mmd2 | energy | fd (the periodic "
                            "evaluation, every train.eval_every steps), each also as <name>_heldout against the "
                            "held-out points (a validation signal: needs data.holdout > 0)")
    rule: str = spec("trough", choices=("trough", "threshold"),
                     help="trough: keep the lowest smoothed signal, turn when it rises `rise` above it; threshold: "
                          "keep the last step with the smoothed signal <= `threshold`, turn when above it")
    threshold: float = spec(0.1, help="rule=threshold: the level of the smoothed signal (of its log, 0.1 = 10 % above "
                                      "1, except for overfit, mmd2 and energy, which can be <= 0 and are read as "
                                      "they are)")
    smoothing: float = spec(0.7, min=0, max=0.999, help="EMA coefficient β of the signal (of its log, except overfit, "
                                                        "mmd2 and energy)")
    patience: int = spec(5, min=1, help="consecutive rising measurements that declare the turn")
    rise: float = spec(0.1, min=0, help="change of the smoothed log-signal that counts: the fall from the peak "
                       "that starts refining, the rise above the trough that counts as rising")
    min_steps: int = spec(0, min=0, help="the rule ignores measurements before this step (the EMA still runs)")
    action: str = spec("stop", choices=("stop", "continue"), help="at the turn: stop training, or log it and go on")
    save_best: bool = spec(True, help="save the best step's checkpoint as checkpoints/best.pt")


@dataclass
class TrainerConfig:
    """Base of every update rule's config; ``name`` selects the rule."""

    name: str = spec("kernel-flow", help="update rule (see `scoregan.trainers.TRAINERS`)")


#: The trainer section of the embedded default job (``configs/toy/8gaussians-kernel-flow.yaml``): used
#: whole when a config names no trainer; its keys are the defaults under any key the config sets (so
#: ``--set trainer.kernel=gaussian`` keeps the rest). A config that names a trainer gets only that
#: trainer's own dataclass defaults.
DEFAULT_TRAINER = {"name": "kernel-flow", "kernel": "imq", "imq_c": 1.0, "imq_beta": -0.5, "step_size": 1.0,
                   "inner_steps": 1, "bank_size": 0, "ema": 0.995}


@dataclass
class ExperimentConfig:
    """A whole experiment: what to fit, with what, how long, and where to report.

    The defaults are the embedded quick-start job, ``configs/toy/8gaussians-kernel-flow.yaml``: the kernel
    flow-matching GAN (inverse multiquadric witness, EMA 0.995, :data:`DEFAULT_TRAINER`) on 8 Gaussians
    (TorchCFM's target), 3,000 steps of batch 128, an 8-D latent and a 3×64 generator, Adam
    (2e-3, β = 0.5, 0.999): under a minute on 2 CPU cores.
    """

    name: str = spec("quickstart", help="run name (default run directory: runs/<name>-<time>)")
    data: DataConfig = spec(default_factory=DataConfig)
    model: ModelConfig = spec(default_factory=ModelConfig)
    trainer: TrainerConfig = spec(default_factory=TrainerConfig)
    optim: OptimConfig = spec(default_factory=OptimConfig)
    train: TrainConfig = spec(default_factory=TrainConfig)
    eval: EvalConfig = spec(default_factory=EvalConfig)
    tracking: TrackingConfig = spec(default_factory=TrackingConfig)
    diagnostics: DiagnosticsConfig = spec(default_factory=DiagnosticsConfig)
    early_stopping: EarlyStoppingConfig = spec(default_factory=EarlyStoppingConfig)


# ---------------------------------------------------------------------------------------------
# Loading, overriding, validating
# ---------------------------------------------------------------------------------------------


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base`` (nested mappings merged, everything else replaced)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """Apply ``a.b.c=value`` strings; values are parsed as YAML (``1e-3``, ``[64, 64]``, ``null``)."""
    raw = deep_merge({}, raw)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        node = raw
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
    return raw


def build_config(raw: dict, trainers: Mapping[str, type]) -> ExperimentConfig:
    """A validated :class:`ExperimentConfig` from a plain mapping; ``trainers`` maps each trainer name
    to its params dataclass (a subclass of :class:`TrainerConfig`). Field-level checks only: the
    checks that involve the data sets or the trainers' capabilities are the experiment layer's."""
    return _build(ExperimentConfig, raw, "", trainers)


def to_dict(cfg: Any) -> dict:
    """The config as plain YAML-able Python data."""
    return dataclasses.asdict(cfg)


def _build(cls: type, raw: Any, prefix: str, trainers: Mapping[str, type]) -> Any:
    where = prefix.rstrip(".") or "config"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of keys, got {raw!r}")
    if cls is TrainerConfig:
        if "name" not in raw:  # no trainer named: the embedded default job's rule and settings
            raw = {**DEFAULT_TRAINER, **raw}
        cls = _trainer_class(raw, prefix, trainers)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            hint = closest(str(key), fields).replace("'", "'" + prefix, 1)
            raise ConfigError(
                f"unknown key {prefix + str(key)!r}{hint}; allowed keys in {where}: {', '.join(fields)}"
            )
    kwargs = {}
    for name, f in fields.items():
        if name not in raw:
            if hints[name] is TrainerConfig:  # the default trainer gets its own typed params too
                kwargs[name] = _build(TrainerConfig, {}, prefix + name + ".", trainers)
            continue
        kwargs[name] = _convert(hints[name], raw[name], prefix + name, f.metadata, trainers)
    return cls(**kwargs)


def _trainer_class(raw: dict, prefix: str, trainers: Mapping[str, type]) -> type:
    name = raw.get("name", TrainerConfig.name)
    if not isinstance(name, str):
        raise ConfigError(f"{prefix}name = {name!r}: expected a string naming a trainer; allowed: "
                          f"{', '.join(sorted(trainers))}")
    if name not in trainers:
        allowed = sorted(trainers)
        raise ConfigError(
            f"{prefix}name = {name!r} is not a trainer; allowed: {', '.join(allowed)}{closest(str(name), allowed)}"
        )
    return trainers[name]


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, key: str, meta: Any, trainers: Mapping[str, type] | None = None) -> Any:
    """``value`` checked and converted to the type ``tp`` of field ``key`` (ConfigError naming it)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            if type(None) in get_args(tp):
                return None
        if len(args) == 1:
            return _convert(args[0], value, key, meta, trainers)
        errors = []
        for a in args:
            try:
                return _convert(a, value, key, meta, trainers)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".", trainers or {})
    if origin is list:
        (inner,) = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} = {value!r}: expected a list of {_describe(inner)}")
        max_len = meta.get("max_len") if meta else None
        if max_len is not None and len(value) > max_len:
            raise ConfigError(f"{key} = {_short(value)}: at most {max_len} entries, got {len(value)}")
        return [_convert(inner, v, f"{key}[{i}]", meta, trainers) for i, v in enumerate(value)]
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key} = {value!r}: allowed values are {', '.join(map(repr, allowed))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r}: expected true or false")
        return value
    if tp is int:
        given = value
        if isinstance(value, str):  # YAML 1.1 reads 1e3 as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{key} = {value!r}: expected an integer")
        if abs(value) > MAX_INT:
            raise ConfigError(f"{key} = {given if isinstance(given, str) else _short(given)}: out of range (an integer field must fit 64 bits, |n| < 2**63)")
        _check_range(key, value, meta)
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} = {value!r}: expected a number")
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(f"{key} = {_short(value)}: too large for a float") from None
        if math.isnan(value) or (math.isinf(value) and not (meta and meta.get("allow_inf"))):
            raise ConfigError(f"{key} = {value!r}: must be a finite number")
        _check_range(key, value, meta)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r}: expected a string")
        if not value.strip() and not (meta and meta.get("allow_empty")):
            raise ConfigError(f"{key} = {value!r}: must not be empty")
        choices = meta.get("choices") if meta else None
        if choices and value not in choices:
            raise ConfigError(
                f"{key} = {value!r}: allowed values are {', '.join(map(repr, choices))}{closest(value, choices)}"
            )
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug in a config dataclass


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (one line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_range(key: str, value: float, meta: Any) -> None:
    if not meta:
        return
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None:
        if meta.get("exclusive_min") and not value > lo:
            raise ConfigError(f"{key} = {value!r}: must be > {lo}")
        if value < lo:
            raise ConfigError(f"{key} = {value!r}: must be >= {lo}")
    if hi is not None:
        if meta.get("exclusive_max") and not value < hi:
            raise ConfigError(f"{key} = {value!r}: must be < {hi}")
        if value > hi:
            raise ConfigError(f"{key} = {value!r}: must be <= {hi}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{key} = {value!r}: allowed values are {', '.join(map(repr, choices))}")
