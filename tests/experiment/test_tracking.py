"""Tracking: metrics.jsonl always; wandb offline writes locally, never needs the network."""

from __future__ import annotations

import json

import pytest

from scoregan.config import load_config
from scoregan.experiment.tracking import Tracker, read_metrics, truncate_metrics


def test_jsonl_rows_and_truncation(tmp_path):
    cfg = load_config(None, ["tracking.mode=disabled"])
    t = Tracker(cfg, tmp_path)
    for s in range(1, 6):
        t.log(s, {"loss": float(s), "nan": float("nan")})
    t.log(5, {"w2": 0.5}, kind="eval")
    t.close()
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 5]
    assert rows[0]["nan"] == "nan" and read_metrics(tmp_path, "eval") == [{"step": 5, "kind": "eval", "w2": 0.5}]
    truncate_metrics(tmp_path / "metrics.jsonl", 3)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]


@pytest.mark.filterwarnings("error::UserWarning")
def test_wandb_offline_logs_locally_without_network(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    cfg = load_config(None, ["tracking.mode=offline"])
    t = Tracker(cfg, tmp_path)
    assert t.wandb is not None
    t.log(1, {"loss": 1.0})
    t.summary({"final": 2.0})
    t.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and any(p.suffix == ".wandb" for p in runs[0].iterdir())
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["loss"] == 1.0
    assert (tmp_path / "wandb_id.txt").read_text().strip()


def test_wandb_mode_disabled_in_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    t = Tracker(load_config(None, ["tracking.mode=offline"]), tmp_path)
    t.close()
    assert t.wandb is None and not (tmp_path / "wandb").exists()
