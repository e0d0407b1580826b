"""The 12-game table of issue 22 from `jitrl eval --games` directories: one column group per configuration.

    python bench/games_table.py static=bench/results/suite12-static:static \\
        defaults=bench/results/suite12-defaults-jitrl:jitrl paper=bench/results/suite12-paper:jitrl \\
        --baseline static --out bench/results/suite12-table.json

Each configuration is ``NAME=DIR:ARM``: the arm ``ARM`` of the games directory ``DIR``; or ``NAME=DIR1+DIR2+...:ARM``,
each game from the first directory whose ``run.json`` lists it (a configuration whose games were played in several
runs, such as one whose option never acted on some games: bench/RESULTS.md, "`--cautious-after`"). A game counts for a
configuration when every seed of it finished the directory's ``episodes``; otherwise its cell says how far
it got. Per game and configuration (mean ± sample std over seeds): average, final and last-10 score (the
last min(10, episodes) episodes), and the normalized last-10 = last-10 / the game's max score. The suite
mean is the mean over games of the normalized last-10, over the games every configuration finished.
Against ``--baseline`` each other configuration gets the issue's goals: suite mean ≥ 2× the baseline's, and
last-10 ≥ the baseline's on every game (ties at 0 named).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jitrl_cli.runs.evaluation import has_logs  # noqa: E402
from jitrl_cli.runs.report import load_runs, mean_std  # noqa: E402


def game_cell(rows_by_seed: dict[int, list[dict]], episodes: int, seeds: int) -> dict[str, Any]:
    """One configuration on one game: its statistics when every seed finished, else how far it got."""
    done = {s: rows for s, rows in rows_by_seed.items() if len(rows) >= episodes}
    if len(done) < seeds:
        return {"complete": False, "episodes_done": sum(min(len(r), episodes) for r in rows_by_seed.values()),
                "episodes_total": episodes * seeds}
    scores = [[float(r["score"]) for r in rows[:episodes]] for rows in done.values()]
    max_score = next((float(r["max_score"]) for rows in done.values() for r in rows if r.get("max_score")), None)
    last = min(10, episodes)
    cell: dict[str, Any] = {"complete": True, "seeds": sorted(done), "max_score": max_score}
    for name, per_seed in (("average", [statistics.fmean(s) for s in scores]), ("final", [s[-1] for s in scores]),
                           ("last10", [statistics.fmean(s[-last:]) for s in scores]),
                           ("best", [max(s) for s in scores])):
        stats = mean_std(per_seed)
        cell[name] = (stats["mean"], stats["std"])
    cell["last10_normalized"] = cell["last10"][0] / max_score if max_score else None
    return cell


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", help="NAME=DIR:ARM")
    ap.add_argument("--baseline", default="static")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    configs: dict[str, tuple[list[Path], str]] = {}
    for text in args.configs:
        name, _, rest = text.partition("=")
        directories, _, arm = rest.rpartition(":")
        configs[name] = ([Path(d) for d in directories.split("+")], arm)
    games: list[str] = []
    table: dict[str, dict[str, Any]] = {}
    for name, (directories, arm) in configs.items():
        table[name] = {}
        for directory in directories:
            params = json.loads((directory / "run.json").read_text())
            for game in params["games"]:
                if game in table[name]:
                    continue
                games += [game] if game not in games else []
                runs = load_runs(directory / game) if has_logs(directory / game) else {}
                table[name][game] = game_cell(runs.get(arm, {}), params["episodes"], params["seeds"])
                table[name][game]["dir"] = str(directory)
        first = json.loads((directories[0] / "run.json").read_text())
        table[name]["_params"] = {"episodes": first["episodes"], "seeds": first["seeds"],
                                  "dir": "+".join(str(d) for d in directories), "arm": arm}
    common = [g for g in games if all(table[c].get(g, {}).get("complete") for c in configs)]
    suite = {c: (statistics.fmean(table[c][g]["last10_normalized"] for g in common) if common else None) for c in configs}
    goals: dict[str, Any] = {}
    if args.baseline in configs:
        base = args.baseline
        for c in configs:
            if c == base:
                continue
            below = [g for g in common if table[c][g]["last10"][0] < table[base][g]["last10"][0]]
            ties0 = [g for g in common if table[c][g]["last10"][0] == table[base][g]["last10"][0] == 0]
            ratio = suite[c] / suite[base] if suite[c] is not None and suite[base] else None
            goals[c] = {"suite_ratio": ratio, "ratio_met": ratio is not None and ratio >= 2,
                        "below_baseline": below, "ties_at_0": ties0}
    names = list(configs)
    print(f"{len(common)} of {len(games)} games finished by every configuration; last-10 (normalized last-10)\n")
    print("| game | " + " | ".join(f"{c} ({table[c]['_params']['episodes']} ep × {table[c]['_params']['seeds']} seeds)"
                                   for c in names) + " |")
    print("| --- |" + " --- |" * len(names))
    for g in games:
        cells = []
        for c in names:
            cell = table[c].get(g)
            if cell is None:
                cells.append("–")
            elif not cell["complete"]:
                cells.append(f"{cell['episodes_done']}/{cell['episodes_total']} episodes")
            else:
                m, s = cell["last10"]
                norm = cell["last10_normalized"]
                cells.append(f"{m:.1f} ± {s:.1f} ({100 * norm:.1f}%)" if norm is not None else f"{m:.1f} ± {s:.1f}")
        print(f"| {g} | " + " | ".join(cells) + " |")
    print("| **suite mean, normalized last-10** | " + " | ".join(
        f"**{100 * suite[c]:.2f}%**" if suite[c] is not None else "–" for c in names) + " |")
    for c in names:  # where a configuration's games came from, when from several runs
        dirs, _ = configs[c]
        if len(dirs) > 1:
            print(f"\n{c}: " + "; ".join(f"{g} from {table[c][g]['dir']}"
                                         + (f" ({len(table[c][g]['seeds'])} seeds)" if table[c][g].get("complete") else "")
                                         for g in games if g in table[c]))
    for c, goal in goals.items():
        ratio = goal["suite_ratio"]
        print(f"\n{c} vs {args.baseline}: suite ratio {'–' if ratio is None else f'{ratio:.2f}×'} (goal ≥ 2×); "
              f"below {args.baseline} on {', '.join(goal['below_baseline']) or 'no game'}; "
              f"ties at 0: {', '.join(goal['ties_at_0']) or 'none'}")
    if args.out:
        args.out.write_text(json.dumps({"games": games, "common": common, "suite_mean_normalized_last10": suite,
                                        "goals": goals, "table": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
