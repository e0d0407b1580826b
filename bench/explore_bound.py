"""How far exploration alone reaches in a game within a budget of episodes: Go-Explore's archive, no model.

A yardstick for `jitrl eval`'s learning goals, not a policy: no LLM prior, no advantages. Every episode
starts from the game's reset, *returns* to a cell of an archive by replaying, action for action, the
shortest history known to reach it (the steps count against the episode's budget, as `--replay-best`'s
do), then *explores* for the rest of the budget, choosing uniformly among the valid actions tried least
often in that exact world state. The archive is `--go-explore`'s (:mod:`jitrl_cli.core.archive`: a cell is
(location, inventory, score), chosen with Go-Explore's count weights and a preference for the best score),
kept up to date step by step instead of rebuilt from a memory. ``--select best-path`` returns instead to a cell drawn uniformly along the
best episode's history, as `--replay-best` does.

A replay step whose world state or valid actions differ from the stored ones (a loop's erasure changed what
chance did) counts as a divergence, and the episode explores from where it is.

It reports, per seed of the exploration's sampler, the score of every episode, the best so far, and
the first episode whose score reached each ``--thresholds`` value. One valid-action finder call per
new world state (the environment caches them): 3 to 4 s an episode on zork1 here.

Usage::

    python bench/explore_bound.py zork1 --episodes 50 --seeds 3 --json bench/results/explore-bound-zork1.json
    python bench/explore_bound.py zork1 --episodes 300 --select best-path
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.base import AdapterError  # noqa: E402
from adapters.jericho_env import JerichoEnv  # noqa: E402
from adapters.state_key import situation_key  # noqa: E402
from jitrl_cli.core.archive import Cell, LoopErasedPath, cell_key, select_cell, visit_cell  # noqa: E402
from jitrl_cli.errors import UserError  # noqa: E402
from jitrl_cli.paths import require_game  # noqa: E402


@dataclass
class Archive:
    """`--go-explore`'s cells (:mod:`jitrl_cli.core.archive`), kept up to date as the episodes play, and the best
    episode's path for ``best-path``."""

    cells: dict[str, Cell] = field(default_factory=dict)
    best_score: float = -math.inf
    best_path: list[tuple[str, str | None]] = field(default_factory=list)

    def visit(self, info: dict, path: list[tuple[str, str | None]]) -> None:
        """Record that ``path`` (loops erased) reached the state of ``info``."""
        visit_cell(self.cells, cell_key(situation_key(info["location"], info["inventory"]), float(info["score"])),
                   float(info["score"]), path)


def run_seed(env: JerichoEnv, seed: int, episodes: int, max_steps: int, select: str) -> dict:
    """Play ``episodes`` episodes of return-then-explore with the sampler seeded by ``seed``.

    Returns:
        ``{"scores": [...], "best": [...], "cells": int, "diverged": int, "returned_steps": [...]}``, one entry
        per episode in the lists.
    """
    rng = np.random.default_rng(seed)
    archive = Archive()
    tried: dict[str, Counter] = defaultdict(Counter)  # world hash → action → times taken
    scores, best, returned, diverged = [], [], [], 0
    for _ in range(episodes):
        obs, info = env.reset()
        archive.visit(info, [])
        target: list[tuple[str, str | None]] = []
        if select == "best-path":
            target = archive.best_path[: int(rng.integers(0, len(archive.best_path) + 1))]
        else:
            cell = select_cell(archive.cells, env.max_score, rng)
            cell.chosen += 1
            target = cell.path
        path = LoopErasedPath()  # the episode's history, its loops erased as the archive's are
        peak = info["score"]
        for t in range(max_steps):
            if t < len(target) and (target[t][0] not in info["candidates"] or target[t][1] != info["state_hash"]):
                diverged += 1  # an erased loop changed what chance did: explore from here
                target = target[:t]
            if t < len(target):
                action = target[t][0]
            else:
                counts = tried[info["state_hash"]]
                least = min(counts[a] for a in info["candidates"])
                action = str(rng.choice([a for a in info["candidates"] if counts[a] == least]))
            tried[info["state_hash"]][action] += 1
            path.arrive(info["state_hash"])
            path.leave(action, info["state_hash"])
            obs, reward, done, truncated, info = env.step(action)
            peak = max(peak, info["score"])
            if done:
                break
            archive.visit(info, path.steps)
        returned.append(min(len(target), t + 1))
        scores.append(info["score"])
        if peak > archive.best_score:
            archive.best_score, archive.best_path = peak, list(path.steps)  # loops erased, to the episode's end
        best.append(max(scores))
    return {"scores": scores, "best": best, "cells": len(archive.cells), "diverged": diverged, "returned_steps": returned}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("game")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 of the exploration's sampler")
    parser.add_argument("--select", choices=["archive", "best-path"], default="archive")
    parser.add_argument("--thresholds", default="35,45,55,69")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    try:
        env = JerichoEnv(require_game(args.game))
    except (UserError, AdapterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    thresholds = [float(x) for x in args.thresholds.split(",")]
    result = {"game": args.game, "episodes": args.episodes, "max_steps": args.max_steps, "select": args.select,
              "seeds": {}}
    try:
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            run = run_seed(env, seed, args.episodes, args.max_steps, args.select)
            run["first_episode_reaching"] = {str(int(x)): next((i + 1 for i, s in enumerate(run["scores"]) if s >= x), None)
                                             for x in thresholds}
            run["seconds"] = round(time.perf_counter() - t0, 1)
            result["seeds"][str(seed)] = run
            last10 = run["scores"][-10:]
            print(f"seed {seed}: final {run['scores'][-1]:g}, last-10 {np.mean(last10):.1f}, best {run['best'][-1]:g}, "
                  f"cells {run['cells']}, first reaching {run['first_episode_reaching']}, {run['seconds']} s", flush=True)
    finally:
        env.close()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
