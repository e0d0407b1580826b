"""`jitrl report`: learning curves and the arm comparison, from an eval directory's episode logs.

The measure x is the episode's ``score`` (Jericho: the game score at the end), or, when the
run's ``run.json`` says ``"measure": "success"`` (web tasks, see :mod:`jitrl_cli.runs.web_eval`),
its success as 0/1 (the logged ``success``, else ``victory``); the summary names it in
``measure``. Per arm, with S seeds and x[s, e] of seed s in episode e (e = 1…E, only
episodes every seed finished):

    curve_mean[e], curve_std[e]   mean and sample standard deviation over seeds of x[:, e]
    average                       mean over episodes, per seed, then mean ± std over seeds
    final                         x[:, E], mean ± std over seeds
    last10                        mean of the last min(10, E) episodes, mean ± std over seeds
    best                          max over seeds and episodes
    normalized                    average / max_score (the game's maximum)
    auc                           area under the mean curve by the trapezoid rule, divided by
                                  E − 1 (so a flat curve at c has auc c); auc_normalized = auc / max_score
    mean_score, success_rate      mean ``score`` and fraction of ``victory`` episodes, over the same episodes
    cross_task_fraction           mean share of retrieved neighbours from other tasks' episodes, over the
                                  episodes that retrieved any (None where none did)
    steps                         the steps played in those episodes
    valid_actions_timeouts        how many of those steps had the fallback moves as candidates because the game's
                                  valid-action finder ran past ``--valid-actions-timeout`` (None: not logged; web: 0).
                                  Such steps depend on the machine's load, so a run with timeouts may not replay.
    valid_actions_seconds         mean seconds per step the valid-action finder took (None: not logged)
    cautious_episodes             how many of those episodes played cautious (``--cautious-after``: no exploration
                                  bonus, no cycle avoidance; 0 where none did or it was not logged)

For the ``success`` measure max_score is 1, so normalized = average.

Every "std" (and every "±" in tables and plots) is the *sample* standard deviation over the seeds,
sqrt(Σ (x_s − mean)² / (S − 1)) (numpy's ``ddof=1``), an estimate of the spread between seeds rather
than the spread of the few seeds that ran; with one seed it is 0 and tables show the mean alone.
:func:`arm_stats` (with :func:`mean_std` and :func:`std_over_seeds`) computes every statistic of an arm for
`jitrl report` and the suite summaries (:mod:`jitrl_cli.runs.web_eval`) alike, and :func:`aggregate_arm`
its mean over several games (:mod:`jitrl_cli.runs.game_suite`); tables and the ``±`` are
drawn by the command layer (:mod:`jitrl_cli.commands.view`).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from jitrl_cli.errors import UserError
from jitrl_cli.runs.evaluation import read_episodes


def load_runs(out: Path) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """arm → seed → episode objects (in episode order) of an eval directory.

    A log may be plain (``episodes/<arm>-seed<s>.jsonl``) or, in a finished directory,
    compressed (``.jsonl.gz``); the plain one is read when both exist (see
    :func:`jitrl_cli.runs.evaluation.read_episodes`).

    Raises:
        UserError: if ``out`` holds no episode logs.
    """
    logs = out / "episodes"
    names = {p.name.removesuffix(".gz") for pattern in ("*.jsonl", "*.jsonl.gz") for p in logs.glob(pattern)}
    files = [logs / name for name in sorted(names)]
    arms: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for path in files:
        rows = read_episodes(path)
        if rows:
            arms.setdefault(rows[0]["arm"], {})[int(rows[0]["seed"])] = sorted(rows, key=lambda r: r["episode"])
    if not arms:
        raise UserError(f"no episode logs in {out / 'episodes'}; run `jitrl eval ... --out {out}` first")
    return arms


MEASURES = {"score": "score", "success": "success rate"}  # measure → axis label


def episode_value(row: dict[str, Any], measure: str) -> float:
    """The value of one logged episode object under ``measure`` (see the module docstring)."""
    if measure == "success":
        return float(bool(row.get("success", row.get("victory"))))
    return float(row["score"])


#: What every "std" of a summary is (recorded in summary.json as ``std``).
STD_DESCRIPTION = "sample standard deviation over seeds (ddof=1, divides by seeds − 1); 0 with one seed"


def std_over_seeds(x: np.ndarray) -> np.ndarray:
    """Sample standard deviation (``ddof=1``) along axis 0 (the seeds) of ``x``; zeros when there is one seed."""
    x = np.asarray(x, dtype=float)
    if x.shape[0] < 2:
        return np.zeros(x.shape[1:])
    return x.std(axis=0, ddof=1)


def mean_std(values: Any) -> dict[str, float]:
    """``{"mean", "std"}`` of one value per seed: the mean and the sample standard deviation (``ddof=1``; 0 for one seed)."""
    x = np.asarray(values, dtype=float).reshape(-1)
    return {"mean": float(x.mean()), "std": float(std_over_seeds(x))}


def arm_stats(x: Any, counted: list[dict[str, Any]]) -> dict[str, Any]:
    """The statistics of one arm, the one aggregation behind game summaries and suite summaries.

    Args:
        x: (S, E) values of the measure, per seed and episode (a suite passes the mean over its tasks).
        counted: the logged episode objects behind ``x``.

    Returns:
        ``curve_mean``, ``curve_std``, ``average``, ``final``, ``last10``, ``best``, ``auc``, ``mean_score``,
        ``success_rate``, ``seconds_per_step_median``, ``cross_task_fraction``, ``steps``,
        ``valid_actions_timeouts``, ``valid_actions_seconds`` and ``cautious_episodes`` (see the module docstring).
    """
    x = np.asarray(x, dtype=float)
    e = x.shape[1]
    curve = x.mean(axis=0)
    last = min(10, e)
    step_seconds = [r["seconds_per_step_median"] for r in counted if r.get("seconds_per_step_median") is not None]
    cross = [r["cross_task_fraction"] for r in counted if r.get("cross_task_fraction") is not None]
    timeouts = [int(r["valid_actions_timeouts"]) for r in counted if "valid_actions_timeouts" in r]
    finder = [r["timings_mean"]["valid_actions"] for r in counted if "valid_actions" in r.get("timings_mean", {})]
    return {
        "curve_mean": curve.tolist(), "curve_std": std_over_seeds(x).tolist(),
        "average": mean_std(x.mean(axis=1)),
        "final": mean_std(x[:, -1]),
        "last10": mean_std(x[:, -last:].mean(axis=1)),
        "best": float(x.max()),
        "auc": float(np.trapezoid(curve) / (e - 1)) if e > 1 else float(curve[0]),
        "mean_score": float(np.mean([r["score"] for r in counted])),
        "success_rate": float(np.mean([bool(r.get("success", r.get("victory"))) for r in counted])),
        "seconds_per_step_median": statistics.median(step_seconds) if step_seconds else None,
        "cross_task_fraction": statistics.fmean(cross) if cross else None,
        "steps": int(sum(r.get("steps", 0) for r in counted)),
        "valid_actions_timeouts": sum(timeouts) if timeouts else None,
        "valid_actions_seconds": statistics.fmean(finder) if finder else None,
        "cautious_episodes": sum(1 for r in counted if r.get("cautious")),
    }


def aggregate_arm(groups: dict[str, dict[int, list[dict[str, Any]]]], value: Any) -> dict[str, Any] | None:
    """One arm's statistics over several groups (a suite's tasks or games): the mean over groups per seed and episode.

    Args:
        groups: group name → seed → the arm's logged episode objects in episode order (only groups the arm ran).
        value: ``value(group, row)`` → the measure of one episode object of that group.

    Returns:
        None when no seed ran in every group; else ``groups`` (names), ``seeds`` (those in every group),
        ``episodes`` (E, the fewest any group and seed finished) and :func:`arm_stats` of y[s, e] = mean over
        groups of value(x[g, s, e]).
    """
    names = list(groups)
    seeds = sorted(set.intersection(*(set(groups[n]) for n in names))) if names else []
    if not seeds:
        return None
    e = min(len(groups[n][s]) for n in names for s in seeds)
    rows = {n: [groups[n][s][:e] for s in seeds] for n in names}  # group → S lists of E rows
    x = np.array([[[value(n, r) for r in rs] for rs in rows[n]] for n in names], dtype=float)  # (G, S, E)
    stats = arm_stats(x.mean(axis=0), [r for n in names for rs in rows[n] for r in rs])
    return {"groups": names, "seeds": seeds, "episodes": e, **stats}


def summarize(out: Path, measure: str | None = None) -> dict[str, Any]:
    """Compute the summary (see the module docstring) of every arm in ``out``.

    Args:
        measure: ``score`` or ``success``; default: ``run.json``'s ``measure``, else ``score``.

    Raises:
        UserError: no episode logs, or an unknown measure.
    """
    runs = load_runs(out)
    params = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    measure = measure or params.get("measure", "score")
    if measure not in MEASURES:
        raise UserError(f"unknown measure {measure!r} in {out / 'run.json'} (expected {' or '.join(MEASURES)})")
    summary: dict[str, Any] = {"out": str(out), "params": params, "measure": measure, "std": STD_DESCRIPTION, "arms": {}}
    for arm, seeds in runs.items():
        n = min(len(rows) for rows in seeds.values())
        scores = np.array([[episode_value(r, measure) for r in rows[:n]] for rows in seeds.values()], dtype=float)  # (S, E)
        stats = arm_stats(scores, [r for rows in seeds.values() for r in rows[:n]])
        max_score = 1.0 if measure == "success" else next(
            (r["max_score"] for rows in seeds.values() for r in rows if r.get("max_score")), None)
        summary["arms"][arm] = {
            "seeds": sorted(seeds), "episodes": n,
            **{k: stats[k] for k in ("curve_mean", "curve_std", "average", "final", "last10", "best")},
            "max_score": max_score,
            "normalized": float(scores.mean() / max_score) if max_score else None,
            "auc": stats["auc"],
            "auc_normalized": stats["auc"] / max_score if max_score else None,
            **{k: stats[k] for k in ("seconds_per_step_median", "mean_score", "success_rate", "cross_task_fraction",
                                     "steps", "valid_actions_timeouts", "valid_actions_seconds", "cautious_episodes")},
        }
    return summary


LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")


def curve_figure(arms: dict[str, dict[str, Any]], *, title: str, ylabel: str, unit: str = "", success: bool = False) -> Any:
    """The learning-curve figure (a matplotlib ``Figure``) that :func:`plot_curves` writes.

    Per arm the mean curve with a ±1 sample-std band over seeds; each arm has its own line style and
    marker, so that arms whose curves coincide stay distinguishable. The y axis starts at 0 (lower only
    if a mean curve goes below 0); for a rate it ends just above 1.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    lowest, highest = 0.0, 0.0
    for i, (arm, s) in enumerate(arms.items()):
        x = np.arange(1, s["episodes"] + 1)
        mean, std = np.array(s["curve_mean"]), np.array(s["curve_std"])
        seeds = len(s["seeds"])
        line, = ax.plot(x, mean, linestyle=LINE_STYLES[i % len(LINE_STYLES)], marker=MARKERS[i % len(MARKERS)],
                        markevery=max(1, len(x) // 20), markersize=5, linewidth=1.8, clip_on=False,
                        zorder=3 + len(arms) - i, label=f"{arm} ({unit}{seeds} seed{'s' if seeds != 1 else ''})")
        if seeds > 1:
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        lowest, highest = min(lowest, float(mean.min())), max(highest, float((mean + std).max()))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("episode")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    if success:
        ax.set_ylim(0, 1.02)
    else:
        ax.set_ylim(lowest, highest * 1.05 if highest > 0 else 1.0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_curves(arms: dict[str, dict[str, Any]], path: Path, *, title: str, ylabel: str, unit: str = "",
                success: bool = False) -> Path:
    """Write a learning-curve PNG: per arm the mean curve (``curve_mean``) with a ±1 std band (``curve_std``) over seeds.

    Args:
        arms: arm name → a summary with ``episodes``, ``seeds``, ``curve_mean``, ``curve_std`` (length ``episodes``).
        path: the PNG to write.
        title, ylabel: plot texts; unit: appended to each legend entry (e.g. "3 tasks × ").
        success: the measure is a rate: y axis fixed to [0, 1].

    See :func:`curve_figure` for the figure.
    """
    import matplotlib.pyplot as plt

    fig = curve_figure(arms, title=title, ylabel=ylabel, unit=unit, success=success)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot(summary: dict[str, Any], path: Path) -> Path:
    """Write ``curve.png``: the measure per episode per arm, mean line with a ±1 sample-std band over seeds."""
    p = summary["params"]
    name = p.get("game") or "/".join(str(p[k]) for k in ("suite", "task") if p.get(k))
    label = MEASURES[summary.get("measure", "score")]
    return plot_curves(summary["arms"], path, title=f"jitrl eval {name}: {label} per episode (mean ± sample std over seeds)",
                       ylabel=label, success=summary.get("measure") == "success")


def write_report(out: Path) -> dict[str, Any]:
    """Compute the summary, write ``summary.json`` and ``curve.png`` into ``out``, return the summary.

    Raises:
        UserError: no episode logs, or ``out`` is not writable.
    """
    return save_report(summarize(out), out, plot)


def save_report(summary: dict[str, Any], out: Path, plot_fn: Any) -> dict[str, Any]:
    """Write ``plot_fn(summary, out / "curve.png")`` and ``out/summary.json`` (with the plot's path); return the summary.

    Raises:
        UserError: ``out`` is not writable.
    """
    try:
        summary["plot"] = str(plot_fn(summary, out / "curve.png"))
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write the report into {out}: {exc.strerror or exc}") from None
    return summary
