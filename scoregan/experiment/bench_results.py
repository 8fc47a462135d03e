"""The toy benchmark's results: the JSON payload (written atomically), its Markdown table and its
figure grid, and the merge of several payloads into one.

A payload holds ``settings``, ``environment``, ``floor`` (per target: W2 of the target against itself),
``rows`` (one per target, trainer and seed: W2 draws, the toy report of the first draw, times, NFE),
and the first samples of each (target, trainer) for the figure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scoregan.plotting import plt, save_figure


def save_json_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """Write ``payload`` as JSON to ``path`` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)


def write_results(payload: dict[str, Any], json_path: str | Path, md_path: str | Path | None = None,
                  fig_path: str | Path | None = None) -> None:
    """Write a benchmark payload as JSON, its Markdown table and its figure grid (paths default to
    ``json_path`` with ``.md`` / ``.png``)."""
    json_path = Path(json_path)
    save_json_atomic(payload, json_path)
    Path(md_path or json_path.with_suffix(".md")).write_text(markdown_table(payload))
    targets = list(dict.fromkeys(r["target"] for r in payload["rows"]))
    trainers = list(dict.fromkeys(r["trainer"] for r in payload["rows"]))
    plot_grid(payload, targets, trainers, fig_path or json_path.with_suffix(".png"))


def merge_results(json_paths: Sequence[str | Path], json_out: str | Path) -> dict[str, Any]:
    """Merge benchmark JSON files (rows, floors, samples; the first file's settings, with the union of
    targets, trainers and seeds) into one, and write it with its table and figure."""
    payloads = [json.loads(Path(p).read_text()) for p in json_paths]
    out = dict(payloads[0])
    out["complete"] = all(p.get("complete", True) for p in payloads)
    out["rows"] = [r for p in payloads for r in p["rows"]]
    for r in out["rows"]:  # a diverged run: W2 None (older files wrote non-finite numbers)
        if r.get("w2_draws") and not all(math.isfinite(w) for w in r["w2_draws"]):
            r.update(w2_mean=None, w2_std=None, w2_draws=None)
    out["floor"] = list({f["target"]: f for p in payloads for f in p["floor"]}.values())
    out["samples"] = {k: v for p in payloads for k, v in p.get("samples", {}).items()}
    out["reference"] = {k: v for p in payloads for k, v in p.get("reference", {}).items()}
    settings = dict(out["settings"])
    for key in ("targets", "trainers", "seeds"):
        settings[key] = list(dict.fromkeys(v for p in payloads for v in p["settings"][key]))
    out["settings"] = settings
    write_results(out, json_out)
    return out


def markdown_table(payload: dict[str, Any]) -> str:
    """Per target: one row per trainer (seeds pooled), plus the target-vs-target floor."""
    rows = payload["rows"]
    s = payload["settings"]
    out = ["# Toy benchmark", "",
           (f"Budget: {s['steps'] or 'each config'} steps, batch {s['batch_size'] or 'each config'}; seeds {s['seeds']}; "
           f"W2 = exact OT between {s['n_samples']} generated and {s['n_samples']} fresh target samples, mean ± std "
           f"over {s['n_draws']} draws (per seed; seeds pooled); other metrics on the first draw (mean over seeds; "
           f"modes covered listed per seed). NFE: network evaluations per sample. Train time: the training "
           f"loop alone, wall clock and process CPU time. "
           f"torch {payload['environment']['torch']}, {s['threads']} thread(s)."), ""]
    if payload.get("note"):
        out += [f"Note: {payload['note']}", ""]
    for floor in payload["floor"]:
        target = floor["target"]
        sub = [r for r in rows if r["target"] == target]
        if not sub:
            continue
        mixture = any("modes_covered" in r for r in sub)
        head = "| trainer | W2 | sliced W2 | MMD² | " + ("modes covered | HQ fraction | " if mixture else "") + \
            "train s (wall) | train s (CPU) | NFE |"
        out += [f"## {target}", "", head, "|" + "---|" * (head.count("|") - 1)]
        out.append(f"| *floor (target vs target)* | {floor['w2_mean']:.3f} ± {floor['w2_std']:.3f} | | | "
                   + ("| | " if mixture else "") + "| | |")
        for trainer in dict.fromkeys(r["trainer"] for r in sub):
            rs = [r for r in sub if r["trainer"] == trainer]
            draws = [w for r in rs for w in (r["w2_draws"] or [])]
            diverged = sum(r["w2_draws"] is None for r in rs)
            w2 = f"{np.mean(draws):.3f} ± {np.std(draws):.3f}" if draws else ""
            if diverged:
                w2 = (w2 + "; " if w2 else "") + f"diverged ({diverged} of {len(rs)} runs: non-finite samples)"
            cells = [trainer, w2,
                     _mean(rs, "sliced_w2", "{:.3f}"), _mean(rs, "mmd2", "{:.2e}")]
            if mixture:
                cells += ["/".join(str(r.get("modes_covered", "–")) for r in rs) + f" of {rs[0].get('n_modes', '?')}",
                          _mean(rs, "hq_fraction", "{:.3f}")]
            cells += [_mean(rs, "train_wall_s", "{:.1f}"), _mean(rs, "train_cpu_s", "{:.1f}"),
                      str(round(float(np.mean([r["nfe"] for r in rs]))))]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _mean(rows: list[dict[str, Any]], key: str, fmt: str) -> str:
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return fmt.format(sum(vals) / len(vals)) if vals else "–"


def _panel_stats(rows: list[dict[str, Any]]) -> str:
    """A panel's title line: W2 (mean over seeds and draws) and, for mixtures, modes covered per seed;
    "diverged" for runs whose samples were non-finite."""
    draws = [w for r in rows for w in (r.get("w2_draws") or []) if math.isfinite(w)]
    parts = [f"W2 {np.mean(draws):.3f}"] if draws else []
    diverged = sum(r.get("w2_draws") is None for r in rows)
    if diverged:
        parts.append(f"diverged {diverged}/{len(rows)}")
    if any("modes_covered" in r for r in rows):
        parts.append("modes " + "/".join(str(r.get("modes_covered", "–")) for r in rows) + f" of {rows[0].get('n_modes', '?')}")
    return " · ".join(parts)


def plot_grid(payload: dict[str, Any], targets: list[str], trainers: list[str], path: str | Path) -> Path:
    """Scatter of each (trainer, target)'s samples (first two coordinates, as kept in the payload) over the
    target's, in a grid: rows trainers, columns targets; each panel's title gives its W2 (and modes covered
    for mixtures). Non-finite samples are not drawn and samples beyond 1.3 × the target's extent are drawn
    clamped to the border (red), each counted in the panel; a diverged run's samples are not drawn."""
    nr, nc = len(trainers), len(targets)
    fig, axes = plt.subplots(nr, nc, figsize=(2.6 * nc, 2.5 * nr + 0.4), squeeze=False)
    rows = payload.get("rows", [])
    for j, target in enumerate(targets):
        for i, trainer in enumerate(trainers):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            key = f"{target}/{trainer}"
            sub = [r for r in rows if r.get("target") == target and r.get("trainer") == trainer]
            lines = [target] if i == 0 else []
            if sub:
                lines.append(_panel_stats(sub))
            if key in payload.get("samples", {}):
                ref = np.asarray(payload["reference"][target], dtype=float).reshape(-1, 2)
                lim = float(np.abs(ref[np.isfinite(ref).all(axis=1)]).max(initial=1.0)) * 1.3
                ax.scatter(ref[:, 0], ref[:, 1], s=1, c="0.75", label="target", rasterized=True)
                x = np.asarray(payload["samples"][key], dtype=float).reshape(-1, 2)
                finite = np.isfinite(x).all(axis=1)
                notes = []
                if sub and all(r.get("w2_draws") is None for r in sub):
                    notes.append("samples non-finite: not drawn")
                else:
                    x = x[finite]
                    out = (np.abs(x) > lim).any(axis=1)
                    ax.scatter(x[~out, 0], x[~out, 1], s=1, c="C0", label="samples", rasterized=True)
                    if out.any():
                        c = np.clip(x[out], -lim, lim)
                        ax.scatter(c[:, 0], c[:, 1], s=8, marker="D", c="tab:red", label="clamped to the border",
                                   clip_on=False)
                        notes.append(f"{int(out.sum())} clamped")
                    if (~finite).any():
                        notes.append(f"{int((~finite).sum())} non-finite")
                if notes:
                    lines.append(", ".join(notes))
                ax.set_xlim(-lim, lim)
                ax.set_ylim(-lim, lim)
            ax.set_title("\n".join(lines), fontsize=7)
            if j == 0:
                ax.set_ylabel(trainer, fontsize=8)
    handles = [plt.Line2D([], [], ls="", marker="o", ms=4, c=c, label=lab)
               for c, lab in (("0.75", "target"), ("C0", "samples"))]
    handles.append(plt.Line2D([], [], ls="", marker="D", ms=4, c="tab:red", label="sample beyond 1.3 × target extent, clamped"))
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.35 / (2.5 * nr + 0.4), 1, 1))
    return save_figure(fig, path, dpi=80)
