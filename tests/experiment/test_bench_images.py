"""The image recipe (scoregan.experiment.bench_images): one tiny end-to-end run writes its table, grid
and JSON; rows of earlier runs stay; the summary's means and the table's ratio to CFM are right."""

from __future__ import annotations

import json

import pytest

from scoregan.experiment.bench_images import markdown, run_image_benchmark, summarise

TINY = ["train.steps=4", "train.batch_size=16", "train.progress=false", "train.eval_every=4",
        "train.checkpoint_every=4", "eval.image_metrics=false", "eval.figures=false", "model.conv.width=8",
        "trainer.ema=0.0"]


def test_summary_and_table_of_synthetic_rows():
    rows = [{"trainer": "cfm", "seed": 0, "fd": 2.0, "kid": 1e-3, "kid_se": 1e-4, "precision": 0.8, "recall": 0.7,
             "train_wall_s": 10.0, "nfe": 50},
            {"trainer": "kernel-flow", "seed": 0, "fd": 3.0, "kid": 2e-3, "kid_se": 2e-4, "precision": 0.7,
             "recall": 0.6, "train_wall_s": 5.0, "nfe": 1},
            {"trainer": "kernel-flow", "seed": 1, "fd": 5.0, "kid": 4e-3, "kid_se": 2e-4, "precision": 0.9,
             "recall": 0.8, "train_wall_s": 7.0, "nfe": 1}]
    lines = summarise(rows)
    kf = next(line for line in lines if line["trainer"] == "kernel-flow")
    assert kf["fd"] == pytest.approx(4.0) and kf["fd_std"] == pytest.approx(1.0) and kf["seeds"] == [0, 1]
    table = markdown("digits", lines, {"note": "n"})
    assert "| kernel-flow | 2 | 4.000 ± 1.000 | 2.00 |" in table  # FD / CFM's = 4 / 2
    assert "| cfm | 1 | 2.000 | 1.00 |" in table


def test_a_tiny_run_writes_table_grid_and_json_and_keeps_earlier_rows(tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    run_image_benchmark("digits", ["kernel-flow"], [0], out=out, runs=runs, overrides=TINY, n=120)
    payload = json.loads((out / "table.json").read_text())
    (row,) = payload["rows"]
    assert row["trainer"] == "kernel-flow" and row["nfe"] == 1 and row["steps"] == 4
    assert row["fd"] > 0 and 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
    assert (out / "kernel-flow.png").stat().st_size > 0 and "| kernel-flow | 1 |" in (out / "table.md").read_text()
    run_image_benchmark("digits", ["gmmn"], [0], out=out, runs=runs, overrides=TINY, n=120)
    assert [r["trainer"] for r in json.loads((out / "table.json").read_text())["rows"]] == ["kernel-flow", "gmmn"]


def test_unknown_dataset_and_trainer_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="--dataset 'svhn'"):
        run_image_benchmark("svhn", ["nsgan"], [0], out=tmp_path, runs=tmp_path)
    with pytest.raises(ValueError, match="--trainers vae"):
        run_image_benchmark("digits", ["vae"], [0], out=tmp_path, runs=tmp_path)
    assert not (tmp_path / "table.json").exists()


def test_a_score_gan_on_a_dsm_teacher_trains_the_dsm_run_of_its_seed_first(tmp_path):
    """digits-score-gan reads s_d from a dsm run: the recipe trains that run (same seed) first, tabulates it
    too, and points the score-gan run at it."""
    import yaml

    out, runs = tmp_path / "out", tmp_path / "runs"
    tiny_unet = ["model.unet.channels=8", "model.unet.groups=4", "model.unet.attention=false"]
    run_image_benchmark("digits", ["score-gan"], [0], out=out, runs=runs, overrides=[*TINY, *tiny_unet], n=120)
    rows = json.loads((out / "table.json").read_text())["rows"]
    assert [(r["trainer"], r["seed"]) for r in rows] == [("dsm", 0), ("score-gan", 0)]
    cfg = yaml.safe_load((runs / "digits-score-gan-s0" / "config.yaml").read_text())
    assert cfg["trainer"]["score_run"] == str((runs / "digits-dsm-s0").resolve())
