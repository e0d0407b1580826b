"""When `--cautious-after N` would have turned an eval run's episodes cautious, read from the run's memories.

    python bench/cautious_trigger.py bench/results/suite12-levers/defaults --after 4

Reads ``DIR/<game>/memory/<arm>-seed<N>/memory.sqlite`` (or ``DIR/memory/...`` of a one-game eval) of each eval
directory given (memories are not committed: the runs must have been played on this machine). Before each stored
episode it counts, over the episodes before it in the same memory, what `jitrl_cli.core.agent.Agent.begin_episode`
reads with `memories.store.MemoryStore.count_deaths` and ``has_scored``: the deaths (an episode that ended before its
step limit with a negative last reward) and the steps that scored (a score above the previous step's in the same
episode, or above the score the game starts with, read from the real engine: the games are found as `jitrl play`
finds them, `$JITRL_GAMES_DIR`). An episode starts cautious where deaths ≥ N and no step scored.

A run played without the option replays exactly under it up to the first episode that would have started cautious
(nothing else reads the option), so a memory with no such episode is the option's run too. Prints one Markdown row per
memory: its episodes, its deaths, the first episode that scored, and the first that would have been cautious (— for
none), with the deaths most seen before a first point.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from memories.files import connect_readonly  # noqa: E402

_PER_EPISODE = """
SELECT e.id,
       e.steps < COALESCE(json_extract(e.params, '$.max_steps'), 60)
           AND (SELECT s.reward FROM steps s WHERE s.episode_id = e.id AND s.step = e.steps - 1) < 0,
       (SELECT COUNT(*) FROM (SELECT score, LAG(score) OVER (ORDER BY step) AS before FROM steps s
                              WHERE s.episode_id = e.id) WHERE score > before OR score > ?)
FROM episodes e ORDER BY e.id
"""


def start_score(game: str) -> float:
    """The score ``game`` starts with: its first observation's, from the real engine."""
    from adapters.jericho_env import JerichoEnv
    from jitrl_cli.runs.session import resolve_game

    env = JerichoEnv(resolve_game(game, None), max_steps=1)
    try:
        return float(env.reset()[1]["score"])
    finally:
        env.close()


def first_cautious(db_path: Path, after: int, start: float) -> tuple[int, int, int | None, int | None, int]:
    """(episodes, deaths, first episode that scored, first episode that starts cautious, deaths before the first
    point) of one memory; episodes are numbered from 1 in the order they were stored."""
    db = connect_readonly(db_path)
    try:
        rows = db.execute(_PER_EPISODE, (start,)).fetchall()
    finally:
        db.close()
    deaths = scored = 0
    first_point = cautious = None
    deaths_before_point = 0
    for number, (_, died, points) in enumerate(rows, start=1):
        if cautious is None and deaths >= after and scored == 0:
            cautious = number
        deaths += int(bool(died))
        if points and first_point is None:
            first_point, deaths_before_point = number, deaths - int(bool(died))
        scored += int(points)
    if first_point is None:
        deaths_before_point = deaths
    return len(rows), deaths, first_point, cautious, deaths_before_point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="eval directories (`eval --games`: one sub-directory per game; or one game's)")
    parser.add_argument("--after", type=int, default=4, help="N of --cautious-after (default 4)")
    args = parser.parse_args()
    print(f"| run | game | memory | episodes | deaths | first point | deaths before it | cautious from (N = {args.after}) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in args.runs:
        single = sorted(run.glob("memory/*/memory.sqlite"))  # a one-game eval directory (`jitrl eval GAME`)
        game_of_single = json.loads((run / "run.json").read_text()).get("game") if single else None
        for db_path in single or sorted(run.glob("*/memory/*/memory.sqlite")):
            game, memory = (game_of_single if single else db_path.parts[-4]), db_path.parts[-2]
            episodes, deaths, point, cautious, before = first_cautious(db_path, args.after, start_score(game))
            print(f"| {run.name} | {game} | {memory} | {episodes} | {deaths} | {point or '—'} | {before} | {cautious or '—'} |")


if __name__ == "__main__":
    main()
