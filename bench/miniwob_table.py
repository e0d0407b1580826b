"""The MiniWoB++ suite tables of issue 23, in the BrowserGym leaderboard's shape, from suite eval directories.

    python bench/miniwob_table.py --jitrl bench/results/miniwob-all-jitrl --static bench/results/miniwob-all-static \\
        --empty bench/results/miniwob-all-jitrl-empty --out bench/results/miniwob-all-table.json

Inputs are directories written by ``jitrl eval --suite miniwob`` (the arms may sit in one directory or in
several; each argument names the directory that holds that arm's logs):
- ``--jitrl``: the learning arm, one suite memory per seed (its episode 1 on a task has the memory of every
  earlier task of the suite);
- ``--static``: the static arm (β = 0, no memory; it does not learn, so any of its episodes estimates its rate);
- ``--empty`` (optional): a ``--task-memory`` jitrl run of 1 episode per task: episode 1 on an empty memory,
  on the same problem instance (page seed) as the suite run's episode 1.

Printed (markdown) and written (``--out``, JSON):
1. the suite table: success rate over the tasks both arms finished, static (all its episodes) and jitrl
   (first 5, last 5, all), beside the leaderboard's published MiniWoB column;
2. the goals: jitrl's last-5 suite mean against static + 15 points, and per task whether jitrl is worse than
   static beyond noise: the 95% interval of the difference of the two success rates (Newcombe's hybrid
   score interval, from Wilson intervals: Newcombe 1998, Statistics in Medicine 17, method 10) lies below 0;
3. transfer: episode 1 success with the suite memory vs an empty memory, over the tasks after the first;
4. per task: both arms' success, mean steps, median seconds per step and the cross-task fraction.
A task counts where every seed of the arm finished ``episodes`` episodes (``--episodes``, default run.json's).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jitrl_cli.runs.evaluation import has_logs  # noqa: E402
from jitrl_cli.runs.report import load_runs  # noqa: E402

#: the BrowserGym leaderboard's MiniWoB column (success rate %, one attempt per instance; issue 23)
LEADERBOARD = {"Claude-3.5-Sonnet": 69.8, "Llama-3.1-405B": 64.6, "GPT-4o": 63.8, "AgentTrek-32B": 60.0}
Z95 = 1.959963984540054


def arm_logs(suite: Path, arm: str) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """task → seed → the arm's logged episodes (in order), for every task of ``suite`` that has logs of that arm."""
    tasks = json.loads((suite / "run.json").read_text())["tasks"]
    runs = {task: load_runs(suite / task) for task in tasks if has_logs(suite / task)}
    return {task: arms[arm] for task, arms in runs.items() if arm in arms}


def complete(logs: dict[str, dict[int, list[dict]]], episodes: int) -> dict[str, dict[int, list[dict]]]:
    """The tasks where every seed finished ``episodes`` episodes, cut to that many."""
    return {t: {s: rows[:episodes] for s, rows in seeds.items()} for t, seeds in logs.items()
            if seeds and all(len(rows) >= episodes for rows in seeds.values())}


def rate(rows: list[dict]) -> float:
    """Success rate of ``rows`` (success = raw reward > 0)."""
    return sum(bool(r["success"]) for r in rows) / len(rows)


def wilson(successes: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a binomial proportion (Wilson 1927)."""
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return centre - half, centre + half


def newcombe(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float]:
    """95% interval of p1 − p2 (Newcombe 1998, method 10: from the two Wilson intervals)."""
    p1, p2 = s1 / n1, s2 / n2
    l1, u1 = wilson(s1, n1)
    l2, u2 = wilson(s2, n2)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jitrl", type=Path, required=True)
    ap.add_argument("--static", type=Path, required=True)
    ap.add_argument("--empty", type=Path, default=None)
    ap.add_argument("--episodes", type=int, default=None, help="jitrl episodes per task (default: its run.json)")
    ap.add_argument("--window", type=int, default=5, help="episodes in 'first' and 'last' (default 5)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    episodes = args.episodes or json.loads((args.jitrl / "run.json").read_text())["episodes"]
    static_episodes = json.loads((args.static / "run.json").read_text())["episodes"]
    jitrl = complete(arm_logs(args.jitrl, "jitrl"), episodes)
    static = complete(arm_logs(args.static, "static"), static_episodes)
    order = json.loads((args.jitrl / "run.json").read_text())["tasks"]
    tasks = [t for t in order if t in jitrl and t in static]
    if not tasks:
        raise SystemExit("error: no task has complete logs in both arms yet")
    w = args.window
    per_task = []
    for t in tasks:
        j_rows = [r for rows in jitrl[t].values() for r in rows]
        j_first = [r for rows in jitrl[t].values() for r in rows[:w]]
        j_last = [r for rows in jitrl[t].values() for r in rows[-w:]]
        s_rows = [r for rows in static[t].values() for r in rows]
        lo, hi = newcombe(sum(r["success"] for r in j_last), len(j_last), sum(r["success"] for r in s_rows), len(s_rows))
        shares = [r["cross_task_fraction"] for r in j_rows if r.get("cross_task_fraction") is not None]
        per_task.append({
            "task": t, "static": rate(s_rows), "static_n": len(s_rows), "jitrl_first": rate(j_first),
            "jitrl_last": rate(j_last), "jitrl_all": rate(j_rows), "jitrl_last_n": len(j_last),
            "diff_last_ci95": [lo, hi], "worse_beyond_noise": hi < 0,
            "steps_jitrl": statistics.fmean(r["steps"] for r in j_rows),
            "steps_static": statistics.fmean(r["steps"] for r in s_rows),
            "s_per_step_jitrl": statistics.median(r["seconds_per_step_median"] for r in j_rows),
            "s_per_step_static": statistics.median(r["seconds_per_step_median"] for r in s_rows),
            "cross_task_fraction": statistics.fmean(shares) if shares else None,
            "episode1_suite_memory": [bool(rows[0]["success"]) for rows in jitrl[t].values()],
        })
    suite = {k: statistics.fmean(r[k] for r in per_task) for k in ("static", "jitrl_first", "jitrl_last", "jitrl_all")}
    shares = [r["cross_task_fraction"] for r in per_task if r["cross_task_fraction"] is not None]
    result: dict[str, Any] = {
        "tasks": len(tasks), "tasks_in_suite": len(order), "jitrl_episodes": episodes, "static_episodes": static_episodes,
        "jitrl_seeds": sorted({s for t in tasks for s in jitrl[t]}), "window": w, "suite": suite,
        "cross_task_fraction": statistics.fmean(shares) if shares else None,
        "goal_last5_vs_static_plus_15": {"jitrl": suite["jitrl_last"], "static_plus_15": suite["static"] + 0.15,
                                         "met": suite["jitrl_last"] >= suite["static"] + 0.15},
        "worse_beyond_noise": [r["task"] for r in per_task if r["worse_beyond_noise"]],
        "per_task": per_task,
    }
    if args.empty is not None:
        empty = complete(arm_logs(args.empty, "jitrl"), 1)
        pairs = [(r["task"], s, rows[0]["success"], empty[r["task"]][s][0]["success"])
                 for r in per_task[1:] if r["task"] in empty
                 for s, rows in jitrl[r["task"]].items() if s in empty[r["task"]]]
        result["transfer"] = {
            "tasks": len({p[0] for p in pairs}), "pairs": len(pairs),
            "episode1_suite_memory": sum(p[2] for p in pairs) / len(pairs) if pairs else None,
            "episode1_empty_memory": sum(p[3] for p in pairs) / len(pairs) if pairs else None,
            "suite_only": [p[0] for p in pairs if p[2] and not p[3]], "empty_only": [p[0] for p in pairs if p[3] and not p[2]],
        }
    print(f"## MiniWoB++: {len(tasks)} of {len(order)} tasks, jitrl {episodes} episodes × seeds {result['jitrl_seeds']}, "
          f"static {static_episodes}\n")
    print("| agent | model | MiniWoB success % |\n| --- | --- | --- |")
    for name, value in LEADERBOARD.items():
        print(f"| {name} (BrowserGym leaderboard) | API / open weights | {value} |")
    print(f"| static (β = 0) | Gemma 3 270M Q4_K_M | {pct(suite['static'])} |")
    print(f"| jitrl, first {w} episodes | Gemma 3 270M Q4_K_M | {pct(suite['jitrl_first'])} |")
    print(f"| jitrl, last {w} episodes | Gemma 3 270M Q4_K_M | {pct(suite['jitrl_last'])} |")
    print(f"| jitrl, all {episodes} episodes | Gemma 3 270M Q4_K_M | {pct(suite['jitrl_all'])} |\n")
    g = result["goal_last5_vs_static_plus_15"]
    print(f"Goal: jitrl last-{w} {pct(g['jitrl'])} vs static + 15 = {pct(g['static_plus_15'])}: "
          f"{'met' if g['met'] else 'not met'}; worse than static beyond noise (95% interval below 0): "
          f"{', '.join(result['worse_beyond_noise']) or 'none'}; cross-task fraction {pct(result['cross_task_fraction'])}%\n")
    if "transfer" in result:
        tr = result["transfer"]
        print(f"Transfer: episode 1 on {tr['tasks']} tasks: suite memory {pct(tr['episode1_suite_memory'])}% vs empty "
              f"{pct(tr['episode1_empty_memory'])}%; only with the suite memory: {', '.join(tr['suite_only']) or 'none'}; "
              f"only with an empty one: {', '.join(tr['empty_only']) or 'none'}\n")
    print(f"| task | static % | jitrl first {w} | last {w} | all | Δ last − static, 95% | steps (jitrl / static) "
          "| s/step (jitrl / static) | cross-task % |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in per_task:
        lo, hi = r["diff_last_ci95"]
        print(f"| {r['task']} | {pct(r['static'])} | {pct(r['jitrl_first'])} | {pct(r['jitrl_last'])} | {pct(r['jitrl_all'])} "
              f"| [{100 * lo:+.0f}, {100 * hi:+.0f}]{' worse' if r['worse_beyond_noise'] else ''} "
              f"| {r['steps_jitrl']:.1f} / {r['steps_static']:.1f} | {r['s_per_step_jitrl']:.2f} / {r['s_per_step_static']:.2f} "
              f"| {pct(r['cross_task_fraction'])} |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
