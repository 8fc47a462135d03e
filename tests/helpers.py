"""Shared helpers of the trainer and experiment tests: fast overrides, a built rule, a step context, spies."""

from __future__ import annotations

from pathlib import Path

import torch

from scoregan.config import load_config
from scoregan.data import make_dataset
from scoregan.experiment.runs import build_rule
from scoregan.metrics import w2 as metric_w2
from scoregan.trainers.base import StepContext

ROOT = Path(__file__).resolve().parents[1]

F64 = torch.float64

ISSUE_TRAINERS = ["nsgan", "sgan", "lsgan", "hinge", "fgan-kl", "fgan-reverse_kl", "fgan-pearson", "fgan-hellinger",
                  "fgan-js", "wgan-gp", "mmd-gan", "gmmn", "score-gan", "kernel-flow", "cfm", "ot-cfm"]

FAST = ["train.batch_size=32", "model.generator.hidden=[16, 16]", "model.discriminator.hidden=[16, 16]",
        "train.progress=false", "tracking.mode=disabled", "eval.figures=false", "eval.n_samples=64"]

SMALL_NETS = {
    "score-gan": ["trainer.score_net.hidden=[16]", "trainer.generator_score_net.hidden=[16]",
                  "trainer.ratio_net.hidden=[16]", "trainer.data_score_steps=10", "trainer.score_warmup=3",
                  "trainer.data_score_cache=null"],
    "cfm": ["trainer.velocity_net.hidden=[16]"],
    "ot-cfm": ["trainer.velocity_net.hidden=[16]"],
}


def config_path(target: str, trainer: str) -> Path:
    return ROOT / "configs" / "toy" / f"{target}-{trainer}.yaml"


def rule_for(name: str, *overrides: str, config: str | None = None):
    """A built rule on CPU float64 (seeded) and a step context factory."""
    cfg = load_config(config, [f"trainer.name={name}", *FAST, *SMALL_NETS.get(name, []), *overrides])
    data = make_dataset(cfg.data)
    torch.manual_seed(0)
    cfg.train.dtype = "float64"
    return build_rule(cfg, data, torch.device("cpu")), cfg, data


def make_ctx(cfg, data, step=1, seed=0):
    return StepContext(step, cfg.train.batch_size, data, torch.Generator().manual_seed(seed + 1),
                       torch.Generator().manual_seed(seed + 2), torch.device("cpu"), F64)


def capture_perturbation(rule):
    """Record the clean batch x and its perturbation x̃ of a score-GAN rule's ``perturb`` call."""
    seen = {}
    orig = rule.perturb

    def spy(ctx, x, sigma):
        out = orig(ctx, x, sigma)
        seen.update(x=x.clone(), x_noisy=out[0].clone())
        return out

    rule.perturb = spy
    return seen


def capture_regression(rule):
    """Record (z, target) of every ``regress`` call of a generator rule."""
    calls = []
    orig = rule.regress

    def spy(z, target, steps=1, **kw):
        calls.append((z.clone(), target.clone()))
        return orig(z, target, steps, **kw)

    rule.regress = spy
    return calls


def gen(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def points(n: int, d: int, seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    """n standard normal points in R^d, (n, d), drawn from ``gen(seed)``."""
    return torch.randn(n, d, generator=gen(seed), dtype=dtype)


def w2(a: torch.Tensor, b: torch.Tensor) -> float:
    """Exact W2 between two equal-size empirical measures (scoregan.metrics.w2), as a float."""
    return float(metric_w2(a, b))


def wandb_history(path: Path) -> list[dict]:
    """The history rows of an offline wandb run file (``run-<id>.wandb``), each as {key: value}.

    The file is a LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB blocks of
    records (crc32, length, type: full / first / middle / last), each a protobuf ``Record``."""
    import json
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, rows, pos, buf = path.read_bytes(), [], 7, b""
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (2, 3):
            continue
        record = pb.Record()
        record.ParseFromString(buf)
        if record.WhichOneof("record_type") == "history":
            rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item})
    return rows


def load_recipe(name: str):
    """The module ``recipes/<name>.py`` (recipes are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
