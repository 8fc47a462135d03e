"""Tracking: metrics.jsonl always; wandb offline writes locally, never needs the network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from scoregan.config import load_config
from scoregan.experiment.tracking import Tracker, read_metrics, truncate_metrics
from tests.helpers import wandb_history


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


def _history(path: Path, key: str, want: list, timeout: float = 60.0) -> list:
    """The (step, value) rows of ``key`` in the offline run file ``path``, read until they equal ``want``
    or ``timeout`` passes: wandb's service may still be writing the file when ``finish()`` returns."""
    deadline = time.monotonic() + timeout
    while True:
        got = [(r["step"], r[key]) for r in wandb_history(path) if key in r]
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def _newest_offline_run(run_dir: Path) -> Path:
    newest = sorted((run_dir / "wandb").glob("offline-run-*"))[-1]
    return next(newest.glob("*.wandb"))


def test_a_resumed_run_replays_metrics_jsonl_into_the_same_wandb_run(tmp_path, monkeypatch):
    """metrics.jsonl is the source of truth: a new process (a resume after a kill) logs every kept row
    again into the run of the same id, so its wandb history has every step."""
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    cfg = load_config(None, ["tracking.mode=offline"])
    killed = (f"import os; from scoregan.config import load_config; from scoregan.experiment.tracking import Tracker\n"
              f"t = Tracker(load_config(None, ['tracking.mode=offline']), {str(tmp_path)!r})\n"
              f"for s in range(1, 6): t.log(s, {{'loss': float(s)}})\n"
              f"os._exit(0)  # like SIGKILL: wandb never finishes, what it buffered is lost")
    # a job of its own: not attached to this test process's wandb service (as a killed cluster job is not)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_SERVICE")}
    subprocess.run([sys.executable, "-c", killed], check=True, env={**env, "WANDB_SILENT": "true"})
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]
    run_id = (tmp_path / "wandb_id.txt").read_text()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = Tracker(cfg, tmp_path, resume_step=3)  # the checkpoint held step 3
        assert second.wandb is not None, [str(w.message) for w in caught]
        sync_file = Path(second.wandb.settings.sync_file)  # this process's own segment
        second.log(4, {"loss": 40.0})
        second.close()
    assert not [w for w in caught if "wandb" in str(w.message)], [str(w.message) for w in caught]
    assert (tmp_path / "wandb_id.txt").read_text() == run_id and second.wandb is None
    assert sync_file.parent == sorted((tmp_path / "wandb").glob("offline-run-*"))[-1]
    want = [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]
    assert _history(sync_file, "train/loss", want) == want


def test_online_without_a_server_falls_back_to_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    import scoregan.experiment.tracking as tracking

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr(tracking, "INIT_TIMEOUT_S", 2.0)
    with pytest.warns(UserWarning, match="mode='online'"):
        t = Tracker(load_config(None, ["tracking.mode=online"]), tmp_path)
    assert t.wandb is not None and t.wandb.settings.mode == "offline"
    t.log(1, {"loss": 1.0})
    t.close()
    assert _history(_newest_offline_run(tmp_path), "train/loss", [(1, 1.0)]) == [(1, 1.0)]
