"""Fuzzing the config loader: seeded random mutations of shipped configs (wrong types, out-of-range and
non-finite numbers, unknown keys, empty strings, deleted sections, lists for scalars and scalars for
lists) are each either accepted (a valid config) or refused with one ConfigError line that names the
mutated key; through ``scoregan.cli.main`` a refusal is exit code 2 and one stderr line."""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path

import pytest
import yaml

from scoregan.cli import main
from scoregan.config import ConfigError, ExperimentConfig
from scoregan.experiment.config import from_dict, load_config, read_yaml

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [ROOT / "configs/toy" / f"8gaussians-{t}.yaml" for t in ("nsgan", "kernel-flow", "score-gan", "wgan-gp")]
N_MUTATIONS = 240
N_CLI = 24

#: replacement values by kind: (kind, value)
VALUES = [
    ("wrong_type", "abc"), ("wrong_type", {"k": 1}), ("wrong_type", True), ("wrong_type", None),
    ("out_of_range", -1), ("out_of_range", -1e9), ("out_of_range", 10**12), ("out_of_range", 1e300),
    ("out_of_range", 0), ("out_of_range", 10**30), ("out_of_range", 0.5),
    ("non_finite", math.inf), ("non_finite", -math.inf), ("non_finite", math.nan), ("non_finite", "nan"),
    ("empty_string", ""), ("empty_string", "   "),
    ("list_for_scalar", [1, 2]), ("list_for_scalar", []),
    ("scalar_for_list", 7), ("scalar_for_list", "x"),
]


def _leaves(node: dict, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf (lists count as leaves) of a nested mapping."""
    out = []
    for k, v in node.items():
        if isinstance(v, dict) and v:
            out += _leaves(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def _yaml_text(value) -> str:
    """``value`` as the text of a ``--set key=value`` (YAML): .inf / .nan for non-finite floats."""
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    return json.dumps(value)


def mutations(seed: int = 0, n: int = N_MUTATIONS) -> list[dict]:
    """``n`` seeded mutations: each {config, kind, key, and either override (a --set) or raw (a mapping)}."""
    rng = random.Random(seed)
    raws = {p: read_yaml(p) for p in SHIPPED}
    out = []
    for i in range(n):
        path = rng.choice(SHIPPED)
        raw = copy.deepcopy(raws[path])
        r = rng.random()
        if r < 0.1:  # an unknown key in a random section (or at the top)
            section = rng.choice([None, *[k for k, v in raw.items() if isinstance(v, dict)]])
            key = rng.choice(["frobnicate", "stepz", "lr", "hiden", "bogus_key"])
            (raw if section is None else raw[section])[key] = rng.choice([1, "x", None])
            out.append({"config": path, "kind": "unknown_key", "key": key if section is None else f"{section}.{key}",
                        "raw": raw})
        elif r < 0.16:  # a deleted section
            section = rng.choice([k for k, v in raw.items() if isinstance(v, dict)])
            del raw[section]
            out.append({"config": path, "kind": "deleted_section", "key": section, "raw": raw})
        elif r < 0.2:  # a section replaced by a scalar or a list
            section = rng.choice([k for k, v in raw.items() if isinstance(v, dict)])
            raw[section] = rng.choice([3, "abc", [1, 2], ""])
            out.append({"config": path, "kind": "section_not_a_mapping", "key": section, "raw": raw})
        else:  # a leaf set with --set to a bad value
            key = rng.choice([k for k in _leaves(raw) if k != "trainer.name" or rng.random() < 0.3])
            kind, value = rng.choice(VALUES)
            out.append({"config": path, "kind": kind, "key": key, "override": f"{key}={_yaml_text(value)}"})
    return out


def names_key(msg: str, key: str) -> bool:
    """Whether a refusal names the mutated key."""
    return key in msg


def _load(m: dict) -> ExperimentConfig:
    if "override" in m:
        return load_config(m["config"], [m["override"]])
    return from_dict(m["raw"])


def test_fuzzed_configs_are_accepted_or_refused_in_one_line_naming_the_key():
    counts = {"accepted": 0, "refused": 0}
    bad = []
    for i, m in enumerate(mutations()):
        try:
            cfg = _load(m)
        except ConfigError as exc:
            counts["refused"] += 1
            msg = str(exc)
            if "\n" in msg or not names_key(msg, m["key"]):
                bad.append((i, m["kind"], m.get("override", m["key"]), msg))
        else:
            counts["accepted"] += 1
            assert isinstance(cfg, ExperimentConfig)
    assert not bad, "\n".join(map(str, bad))
    assert counts["accepted"] + counts["refused"] == N_MUTATIONS
    assert counts["refused"] > N_MUTATIONS // 2 and counts["accepted"] > 0, counts  # the table exercises both


def _cli_args(m: dict, tmp_path: Path, i: int) -> list[str]:
    if "override" in m:
        return ["train", str(m["config"]), "--set", m["override"], "--print-config"]
    f = tmp_path / f"m{i}.yaml"
    f.write_text(yaml.safe_dump(m["raw"]))
    return ["train", str(f), "--print-config"]


@pytest.mark.parametrize("chunk", range(2))
def test_fuzzed_configs_through_the_cli_exit_2_with_one_line(chunk, tmp_path, capsys):
    all_m = mutations()
    sample = random.Random(1).sample(range(len(all_m)), N_CLI)[chunk::2]
    for i in sample:
        m = all_m[i]
        try:
            _load(m)
            refused = False
        except ConfigError:
            refused = True
        code = main(_cli_args(m, tmp_path, i))
        out, err = capsys.readouterr()
        if refused:
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1 and lines[0].startswith("scoregan train: error: "), (m, err)
            assert names_key(lines[0], m["key"]) and "Traceback" not in err
        else:
            assert code == 0 and not err.strip() and yaml.safe_load(out)["train"], (m, err)
