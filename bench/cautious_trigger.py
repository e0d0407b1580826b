"""When `--cautious-after N` would have turned an eval run's episodes cautious, read from the run's memories.

    python bench/cautious_trigger.py bench/results/suite12-levers/defaults --after 4

Reads ``DIR/<game>/memory/<arm>-seed<N>/memory.sqlite`` (or ``DIR/memory/...`` of a one-game eval) of each eval
directory given (memories are not committed: the runs must have been played on this machine). Before each stored
episode it asks the memory what `jitrl_cli.core.agent.Agent.begin_episode` asks it, over the episodes stored before
that one (`memories.store.MemoryStore.count_deaths` and ``has_scored`` with ``before_episode``): the deaths, and whether
a step scored (the score the game starts with is read from the real engine: the games are found as `jitrl play` finds
them, `$JITRL_GAMES_DIR`). An episode starts cautious where deaths ≥ N and no step scored.

A run played without the option replays exactly under it up to the first episode that would have started cautious
(nothing else reads the option), so a memory with no such episode is the option's run too. Prints one Markdown row per
memory: its episodes, its deaths, the first episode that scored, the deaths before it (all of them where none scored),
and the first episode that would have been cautious (— for none).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jitrl_cli.commands.options import CAUTIOUS_AFTER  # noqa: E402
from memories.embedding import get_embedder  # noqa: E402
from memories.store import MemoryStore  # noqa: E402


@functools.cache
def start_score(game: str) -> float:
    """The score ``game`` starts with: its first observation's, from the real engine (once per game)."""
    from adapters.jericho_env import JerichoEnv
    from jitrl_cli.runs.session import resolve_game

    env = JerichoEnv(resolve_game(game, None), max_steps=1)
    try:
        return float(env.reset()[1]["score"])
    finally:
        env.close()


def first_cautious(memory: Path, game: str, after: int) -> tuple[int, int, int | None, int, int | None]:
    """(episodes, deaths, first episode that scored, deaths before it, first episode that starts cautious) of one
    memory directory; episodes are numbered from 1 in the order they were stored."""
    start = start_score(game)
    with MemoryStore(memory, get_embedder(), writable=False) as store:
        ids = store.episode_ids([game])
        first_point = cautious = None
        for number, episode_id in enumerate(ids, start=1):
            deaths = store.count_deaths(game, before_episode=episode_id)
            scored = store.has_scored(game, start, before_episode=episode_id)
            if cautious is None and deaths >= after and not scored:
                cautious = number
            if first_point is None and store.has_scored(game, start, before_episode=episode_id + 1):
                first_point, before_point = number, deaths
        total = store.count_deaths(game)
    return len(ids), total, first_point, total if first_point is None else before_point, cautious


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="eval directories (`eval --games`: one sub-directory per game; or one game's)")
    parser.add_argument("--after", type=int, default=CAUTIOUS_AFTER.default,
                        help=f"N of --cautious-after (default {CAUTIOUS_AFTER.default}, the option's)")
    args = parser.parse_args()
    print(f"| run | game | memory | episodes | deaths | first point | deaths before it | cautious from (N = {args.after}) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in args.runs:
        single = sorted(run.glob("memory/*/memory.sqlite"))  # a one-game eval directory (`jitrl eval GAME`)
        game_of_single = json.loads((run / "run.json").read_text()).get("game") if single else None
        for db_path in single or sorted(run.glob("*/memory/*/memory.sqlite")):
            game, memory = (game_of_single if single else db_path.parts[-4]), db_path.parts[-2]
            episodes, deaths, point, before, cautious = first_cautious(db_path.parent, game, args.after)
            print(f"| {run.name} | {game} | {memory} | {episodes} | {deaths} | {point or '—'} | {before} | {cautious or '—'} |")


if __name__ == "__main__":
    main()
