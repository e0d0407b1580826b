"""`jitrl report`: learning curves and the arm comparison, from an eval directory's episode logs.

Per arm, with S seeds and the score x[s, e] of seed s in episode e (e = 1…E, only
episodes every seed finished):

    curve_mean[e], curve_std[e]   mean and standard deviation over seeds of x[:, e]
    average                       mean over episodes, per seed, then mean ± std over seeds
    final                         x[:, E], mean ± std over seeds
    last10                        mean of the last min(10, E) episodes, mean ± std over seeds
    best                          max over seeds and episodes
    normalized                    average / max_score (the game's maximum)
    auc                           area under the mean curve by the trapezoid rule, divided by
                                  E − 1 (so a flat curve at c has auc c); auc_normalized = auc / max_score
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from jitrl_cli.errors import UserError
from jitrl_cli.evaluation import read_episodes


def load_runs(out: Path) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """arm → seed → episode objects (in episode order) of an eval directory.

    Raises:
        UserError: if ``out`` holds no episode logs.
    """
    files = sorted((out / "episodes").glob("*.jsonl"))
    arms: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for path in files:
        rows = read_episodes(path)
        if rows:
            arms.setdefault(rows[0]["arm"], {})[int(rows[0]["seed"])] = sorted(rows, key=lambda r: r["episode"])
    if not arms:
        raise UserError(f"no episode logs in {out / 'episodes'}; run `jitrl eval ... --out {out}` first")
    return arms


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def summarize(out: Path) -> dict[str, Any]:
    """Compute the summary (see the module docstring) of every arm in ``out``."""
    runs = load_runs(out)
    params = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    summary: dict[str, Any] = {"out": str(out), "params": params, "arms": {}}
    for arm, seeds in runs.items():
        n = min(len(rows) for rows in seeds.values())
        scores = np.array([[r["score"] for r in rows[:n]] for rows in seeds.values()], dtype=float)  # (S, E)
        max_score = next((r["max_score"] for rows in seeds.values() for r in rows if r.get("max_score")), None)
        curve = scores.mean(axis=0)
        last = min(10, n)
        auc = float(np.trapezoid(curve) / (n - 1)) if n > 1 else float(curve[0])
        steps = [r["seconds_per_step_median"] for rows in seeds.values() for r in rows[:n]]
        summary["arms"][arm] = {
            "seeds": sorted(seeds), "episodes": n,
            "curve_mean": curve.tolist(), "curve_std": scores.std(axis=0).tolist(),
            "average": _mean_std(scores.mean(axis=1).tolist()),
            "final": _mean_std(scores[:, -1].tolist()),
            "last10": _mean_std(scores[:, -last:].mean(axis=1).tolist()),
            "best": float(scores.max()),
            "max_score": max_score,
            "normalized": float(scores.mean() / max_score) if max_score else None,
            "auc": auc,
            "auc_normalized": auc / max_score if max_score else None,
            "seconds_per_step_median": statistics.median(steps) if steps else None,
        }
    return summary


def plot(summary: dict[str, Any], path: Path) -> Path:
    """Write ``curve.png``: score per episode per arm, mean line with a ±1 std band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for arm, s in summary["arms"].items():
        x = np.arange(1, s["episodes"] + 1)
        mean, std = np.array(s["curve_mean"]), np.array(s["curve_std"])
        line, = ax.plot(x, mean, marker="o" if len(x) <= 20 else None, label=f"{arm} (n={len(s['seeds'])} seeds)")
        if len(s["seeds"]) > 1:
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    game = summary["params"].get("game", "")
    ax.set_title(f"jitrl eval {game}: score per episode (mean ± std over seeds)")
    ax.set_xlabel("episode")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(out: Path) -> dict[str, Any]:
    """Compute the summary, write ``summary.json`` and ``curve.png`` into ``out``, return the summary."""
    summary = summarize(out)
    summary["plot"] = str(plot(summary, out / "curve.png"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
