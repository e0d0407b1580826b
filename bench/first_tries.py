"""What trying something new did, per game: the steps of eval runs' memories split by what earlier episodes knew.

    python bench/first_tries.py bench/results/suite12-exact/defaults bench/results/suite12-levers/backoff-states

Reads ``DIR/<game>/memory/<arm>-seed<N>/memory.sqlite`` of each eval directory given (memories are not committed: the
runs must have been played on this machine). Each step of an episode is, against the episodes before it in the same
memory:

    new state   its world state (Jericho's world-state hash) was in no earlier episode
    new action  its world state was, but no earlier episode took this action there (a first try)
    repeat      an earlier episode took this action from this world state

Per game and class: the steps, the share that were an episode's last step in a game lost (a death: the episode ended
before its step limit), the points per step (positive rewards only) and, for first tries and repeats, the mean
advantage G − V̂, V̂ = the mean return of the world state's steps in the earlier episodes (paper §4.2, eq. 6, over
exact neighbours). Prints one Markdown table. The step limit is read from the episodes' params (60 where missing).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from memories.files import connect_readonly  # noqa: E402

CLASSES = ("new state", "new action", "repeat")


def classify(db: sqlite3.Connection) -> dict[str, list[tuple[bool, float, float | None]]]:
    """(death, points, advantage or None) of each step of one memory, by class (:data:`CLASSES`)."""
    returns: dict[str, list[float]] = collections.defaultdict(list)  # world hash → returns of earlier episodes
    pairs: set[tuple[str, str]] = set()
    out: dict[str, list[tuple[bool, float, float | None]]] = {c: [] for c in CLASSES}
    for episode_id, steps, params in db.execute("SELECT id, steps, params FROM episodes ORDER BY id").fetchall():
        died = steps < json.loads(params or "{}").get("max_steps", 60)
        rows = db.execute("SELECT world_hash, action, reward, ret FROM steps WHERE episode_id = ? ORDER BY step",
                          (episode_id,)).fetchall()
        for i, (world, action, reward, ret) in enumerate(rows):
            earlier = returns.get(world)
            kind = "new state" if not earlier else "new action" if (world, action) not in pairs else "repeat"
            advantage = ret - sum(earlier) / len(earlier) if earlier else None
            out[kind].append((died and i == len(rows) - 1, max(reward, 0.0), advantage))
        for world, action, _, ret in rows:
            returns[world].append(ret)
            pairs.add((world, action))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="eval directories (DIR/<game>/memory/*/memory.sqlite)")
    args = parser.parse_args(argv)
    games: dict[str, dict[str, list]] = collections.defaultdict(lambda: {c: [] for c in CLASSES})
    memories = [p for run in args.runs for p in sorted(run.glob("*/memory/*/memory.sqlite"))]
    if not memories:
        print(f"error: no memory under {', '.join(map(str, args.runs))} (DIR/<game>/memory/*/memory.sqlite)",
              file=sys.stderr)
        return 2
    for path in memories:
        with contextlib.closing(connect_readonly(path)) as db:
            for kind, steps in classify(db).items():
                games[path.parents[2].name][kind] += steps
    print("| game | " + " | ".join(f"{c}: steps, deaths, points/step" for c in CLASSES)
          + " | mean G − V̂: first tries, repeats |")
    print("| --- " * (len(CLASSES) + 2) + "|")
    for game, by_kind in sorted(games.items()):
        cells = []
        for kind in CLASSES:
            steps = by_kind[kind]
            n = max(len(steps), 1)
            cells.append(f"{len(steps)}, {sum(d for d, _, _ in steps) / n:.2%}, {sum(p for _, p, _ in steps) / n:.3f}")
        means = []
        for kind in ("new action", "repeat"):
            adv = [a for _, _, a in by_kind[kind] if a is not None]
            means.append(f"{sum(adv) / len(adv):+.2f}" if adv else "–")
        print(f"| {game} | " + " | ".join(cells) + f" | {', '.join(means)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
