"""Go-Explore's archive over the remembered states: where an episode returns to before it explores (``--go-explore``).

Go-Explore (Ecoffet et al., "First return, then explore", Nature 2021) keeps an archive of *cells*, coarse
states, each with the shortest known way to reach it. Every episode first returns to a cell chosen for being
rarely visited or promising, then explores from there. The memory already holds every stored episode's
steps with their world states, so the archive is rebuilt from it at the start of each episode:

* a cell is a text game's situation (location and inventory, :func:`adapters.state_key.situation_of`) with the
  score before the step: "the living room, holding the lamp and the sword, at 10 points" is one cell;
* its path is the shortest stored history that reached it, with its loops erased as `--replay-best` erases
  them (:func:`jitrl_cli.core.agent.best_prefix`: where an episode came back to a world state, the steps
  between the two visits are dropped): the actions from the reset and the world hash before each, which the
  agent replays while the world states match. Without the erasure the stored histories, walks of the
  exploring policy, spent 40 to 58 of zork1's 60 steps on the return;
* its counts are the stored steps taken in it (times seen) and the stored episodes that returned to it
  (times chosen, each episode's ``params["return_cell"]``).

A cell is chosen with probability ∝ W(c) = (1/√(1 + chosen) + 1/√(1 + seen)) · exp((score(c) − best) / τ),
Go-Explore's count weights (Methods, "Cell selection", with its two count terms) times a preference for the
cells nearest the best score, τ = :data:`SCORE_TEMPERATURE` × the game's maximum score. Where `--replay-best`
draws its return point along the best episode only, the archive also returns to the states the best
episode never passed through (zork1: the living room with the lamp, before the trap door).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from adapters.state_key import situation_of

#: τ as a share of the game's maximum score (zork1: 350 points → τ = 10.5 points)
SCORE_TEMPERATURE = 0.03


@dataclass
class Cell:
    """One archive cell.

    Attributes:
        key: the situation and the score (:func:`cell_key`).
        score: the score before a step taken in the cell (points).
        path: (action, world hash before it) per step from the reset to the cell, the shortest stored.
        seen: stored steps taken in the cell; chosen: stored episodes that returned to it.
    """

    key: str
    score: float
    path: list[tuple[str, str | None]] = field(default_factory=list)
    seen: int = 0
    chosen: int = 0


def cell_key(situation: str, score: float) -> str:
    """The cell of a situation (:func:`adapters.state_key.situation_key`) at a score, e.g.
    ``"location: kitchen | inventory: lamp | score: 10"``."""
    return f"{situation}score: {score:g}"


def build_archive(trajectories: Sequence[tuple[int, str, str, float | None, str | None]],
                  start_score: float, chosen: dict[str, int] | None = None) -> dict[str, Cell]:
    """The archive of the cells the stored episodes took a step in.

    Args:
        trajectories: (episode id, state key, action, score after the step, world hash before it) per stored
            step, in episode and step order (:meth:`memories.store.MemoryStore.trajectories`). A step without a
            world hash keeps its loop.
        start_score: the score an episode starts with (the score before each episode's first step).
        chosen: cell key → episodes that returned to it (:meth:`memories.store.MemoryStore.episode_param_counts`).

    Returns:
        cell key → :class:`Cell`; the cells of steps whose state key has no situation (a web page) are left out.
    """
    cells: dict[str, Cell] = {}
    episode, path, score = None, [], start_score
    on_path: dict[str, int] = {}  # world hash → its index in path
    for ep, state_key, action, score_after, world in trajectories:
        if ep != episode:
            episode, path, score, on_path = ep, [], start_score, {}
        if world is not None and world in on_path:  # back where the path already was: erase the loop
            del path[on_path[world]:]
            on_path = {w: i for i, (_, w) in enumerate(path) if w is not None}
        situation = situation_of(state_key)
        if situation is not None and score is not None:
            key = cell_key(situation, score)
            cell = cells.get(key)
            if cell is None:
                cells[key] = Cell(key, float(score), list(path), seen=1)
            else:
                cell.seen += 1
                if len(path) < len(cell.path):
                    cell.path = list(path)
        if world is not None:
            on_path[world] = len(path)
        path.append((action, world))
        score = score_after
    for key, n in (chosen or {}).items():
        if key in cells:
            cells[key].chosen = n
    return cells


def cell_weights(cells: Sequence[Cell], max_score: float) -> np.ndarray:
    """W(c) of each cell, shape (len(cells),): Go-Explore's count weights times exp((score − best) / τ).

    Args:
        cells: the archive's cells (at least one).
        max_score: the game's maximum score (points); τ = :data:`SCORE_TEMPERATURE` × it, at least 1 point.
    """
    tau = max(1.0, SCORE_TEMPERATURE * max_score) if max_score and max_score > 0 else 1.0
    best = max(c.score for c in cells)
    return np.array([(1 / math.sqrt(1 + c.chosen) + 1 / math.sqrt(1 + c.seen)) * math.exp((c.score - best) / tau)
                     for c in cells])


def select_cell(cells: dict[str, Cell], max_score: float, rng: np.random.Generator) -> Cell | None:
    """A cell drawn with probability ∝ :func:`cell_weights`; None for an empty archive."""
    if not cells:
        return None
    pool = list(cells.values())
    w = cell_weights(pool, max_score)
    return pool[int(rng.choice(len(pool), p=w / w.sum()))]
