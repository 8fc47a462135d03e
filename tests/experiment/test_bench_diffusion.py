"""The guided-diffusion recipe end to end on tiny digits runs, and its table."""

from __future__ import annotations

import json

from scoregan.experiment.bench_diffusion import markdown
from tests.helpers import load_recipe

TINY = ["train.progress=false", "eval.figures=false", "eval.n_samples=16",
        "train.batch_size=16", "model.unet.channels=8", "model.unet.groups=4", "model.unet.attention=false",
        "train.threads=1", "trainer.sample_steps=2", "train.steps=2", "train.eval_every=2", "train.checkpoint_every=2"]


def _recipe():
    return load_recipe("guided_diffusion")


def test_the_recipe_trains_both_runs_samples_every_mode_and_writes_the_table(tmp_path):
    out = tmp_path / "out"
    sets = [*(x for t in TINY for x in ("--set", t)), "--set-dg", "trainer.pool=24"]
    argv = ["--dataset", "digits", "--steps", "2", "--seeds", "0", "1", "--n", "24", "--bank", "32",
            "--runs", str(tmp_path / "runs"), "--out", str(out), *sets]
    assert _recipe().main(argv) == 0
    rows = json.loads((out / "table.json").read_text())["rows"]
    assert sorted((r["mode"], r["seed"]) for r in rows) == sorted((m, s) for m in ("none", "kernel", "discriminator")
                                                                 for s in (0, 1))
    assert all(r["nfe"] == 3 and "img_fd" in r for r in rows)  # 2 Heun steps: 2·2 − 1 evaluations
    assert all((out / f"{m}.png").is_file() for m in ("none", "kernel", "discriminator"))
    assert "| 2 | 3 | kernel | 2 |" in (out / "table.md").read_text()
    assert _recipe().main(argv) == 0  # a second call reuses both runs


def test_table_counts_the_seeds_where_guidance_beats_the_unguided_kid_and_the_cost_of_guidance():
    rows = [{"steps": 9, "nfe": 17, "mode": m, "seed": s, "img_fd": 1.0, "img_kid": kid, "img_kid_se": 0.25,
             "img_precision": 0.5, "img_recall": 0.5, "sample_wall_s": wall}
            for m, s, kid, wall in [("none", 0, 2.0, 1.0), ("none", 1, 2.0, 1.0), ("kernel", 0, 1.0, 3.0),
                                    ("kernel", 1, 3.0, 3.0), ("discriminator", 0, 1.0, 1.5),
                                    ("discriminator", 1, 1.5, 1.5)]]
    table = markdown("digits", rows)
    # KID in the feature units (mean ± std over seeds), its mean s.e., wall ÷ unguided, wins
    assert "| 9 | 17 | kernel | 2 | 1.000 ± 0.000 | 2.000 ± 1.000 | 0.250 |" in table
    assert "| 3.00 ± 0.00 | 3.00 | 1/2 |" in table
    assert "| 9 | 17 | discriminator | 2 |" in table and "| 1.50 ± 0.00 | 1.50 | 2/2 |" in table
