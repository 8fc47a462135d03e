"""The toy benchmark (scoregan.experiment.bench_toy and bench_results): its table, merge and crash safety."""

from __future__ import annotations

import json

import pytest


def test_toy_benchmark_writes_its_table_and_merges(tmp_path):
    from scoregan.experiment.bench_results import merge_results
    from scoregan.experiment.bench_toy import run_toy_benchmark

    kw = {"steps": 3, "batch_size": 16, "n_samples": 60, "n_draws": 2, "torchcfm": False, "log": lambda s: None,
          "overrides": ["model.generator.hidden=[8]", "model.discriminator.hidden=[8]"]}
    a = run_toy_benchmark(["8gaussians"], ["gmmn"], tmp_path / "a.json", **kw)
    run_toy_benchmark(["swiss_roll"], ["kernel-flow"], tmp_path / "b.json", **kw)
    (row,) = a["rows"]
    assert row["trainer"] == "gmmn" and row["steps"] == 3 and len(row["w2_draws"]) == 2 and row["nfe"] == 1
    assert row["w2_mean"] == pytest.approx(sum(row["w2_draws"]) / 2) and row["train_cpu_s"] > 0
    assert {"sliced_w2", "mmd2", "modes_covered", "hq_fraction"} <= set(row)
    merged = merge_results([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "all.json")
    assert [r["target"] for r in merged["rows"]] == ["8gaussians", "swiss_roll"]
    md = (tmp_path / "all.md").read_text()
    assert "## 8gaussians" in md and "## swiss_roll" in md and "| gmmn |" in md and "| kernel-flow |" in md
    assert (tmp_path / "all.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="not a benchmark target"):
        run_toy_benchmark(["moons"], ["gmmn"], tmp_path / "c.json", **kw)


def test_toy_benchmark_keeps_finished_rows_when_a_later_run_crashes(tmp_path, monkeypatch):
    """The JSON is rewritten after every row, so a crash in the middle of a long sweep loses nothing."""
    import scoregan.experiment.bench_toy as bt

    real = bt.run_scoregan
    calls = []

    def flaky(target, trainer, *args, **kw):
        calls.append(trainer)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(target, trainer, *args, **kw)

    monkeypatch.setattr(bt, "run_scoregan", flaky)
    kw = {"steps": 3, "batch_size": 16, "n_samples": 60, "n_draws": 2, "torchcfm": False, "log": lambda s: None,
          "overrides": ["model.generator.hidden=[8]", "model.discriminator.hidden=[8]"]}
    with pytest.raises(RuntimeError, match="boom"):
        bt.run_toy_benchmark(["8gaussians"], ["gmmn", "kernel-flow"], tmp_path / "a.json", **kw)
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["complete"] is False and [r["trainer"] for r in saved["rows"]] == ["gmmn"]
    assert not (tmp_path / "a.json.tmp").exists()

    # --resume keeps the finished row (not retrained) and runs only the missing one
    calls.clear()
    monkeypatch.setattr(bt, "run_scoregan", lambda target, trainer, *a, **k: (calls.append(trainer),
                                                                                real(target, trainer, *a, **k))[1])
    out = bt.run_toy_benchmark(["8gaussians"], ["gmmn", "kernel-flow"], tmp_path / "a.json", resume=True, **kw)
    assert calls == ["kernel-flow"] and out["complete"] is True
    assert [r["trainer"] for r in out["rows"]] == ["gmmn", "kernel-flow"]
    assert out["rows"][0] == saved["rows"][0] and out["floor"] == saved["floor"]
    assert (tmp_path / "a.md").read_text().count("| gmmn |") == 1
    with pytest.raises(ValueError, match="other settings.*steps: 3 there, 4 now"):
        bt.run_toy_benchmark(["8gaussians"], ["gmmn"], tmp_path / "a.json", resume=True, **{**kw, "steps": 4})
