"""Where an episode returns to before it explores: Go-Explore's archive (``--go-explore``) and the best path
(``--replay-best``).

Go-Explore (Ecoffet et al., "First return, then explore", Nature 2021) keeps an archive of *cells*, coarse
states, each with the shortest known way to reach it. Every episode first returns to a cell chosen for being
rarely visited or promising, then explores from there. The memory already holds every stored episode's
steps with their world states, so the archive is rebuilt from it at the start of each episode:

* a cell is a text game's situation (location and inventory, :func:`adapters.state_key.situation_of`) with the
  score before the step: "the living room, holding the lamp and the sword, at 10 points" is one cell;
* its path is the shortest stored history that reached it, with its loops erased as `--replay-best` erases
  them (:class:`LoopErasedPath`: where an episode came back to a world state, the steps between the two
  visits are dropped): the actions from the reset and the world hash before each, which the
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


class LoopErasedPath:
    """An episode's path from the reset with its loops erased, built step by step: where the episode comes back to
    a world state it was in, the steps between the two visits are dropped (in a deterministic game they lead
    nowhere), so a replay reaches the same place in as few steps as the episode allows.

    Attributes:
        steps: (action, world hash before it) per step kept, in order.
    """

    def __init__(self) -> None:
        self.steps: list[tuple[str, str | None]] = []
        self._index: dict[str, int] = {}  # world hash → its index in steps

    def arrive(self, world: str | None) -> None:
        """The episode is in world state ``world``: back to its earlier visit, if any (None: no hash, kept as is)."""
        if world is not None and world in self._index:
            del self.steps[self._index[world]:]
            self._index = {w: i for i, (_, w) in enumerate(self.steps) if w is not None}

    def leave(self, action: str, world: str | None) -> None:
        """The episode takes ``action`` in world state ``world`` (after :meth:`arrive`)."""
        if world is not None:
            self._index[world] = len(self.steps)
        self.steps.append((action, world))


def best_prefix(steps: list[tuple[str, float | None, str | None]]) -> list[tuple[str, str | None]]:
    """The path to replay from the best episode (Go-Explore's "return", XTX's exploitation phase; ``--replay-best``).

    The best episode's steps up to and including the first one that reached its best score (its frontier),
    loops erased (:class:`LoopErasedPath`), leaving the rest of the budget to exploration. Nothing when the
    episode never scored.

    Args:
        steps: (action, score after the step, world hash before it) per step, in order
            (:meth:`memories.store.MemoryStore.best_episode_steps`).

    Returns:
        (action, world hash before it) per step to replay.
    """
    scores = [score for _, score, _ in steps]
    if not scores or any(score is None for score in scores) or max(scores) == min(scores):
        return []
    frontier = scores.index(max(scores))  # the first step that reached the episode's best score
    path = LoopErasedPath()
    for action, _, world in steps[: frontier + 1]:
        path.arrive(world)
        path.leave(action, world)
    return path.steps


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


def visit_cell(cells: dict[str, Cell], key: str, score: float, path: Sequence[tuple[str, str | None]]) -> None:
    """Record in ``cells`` that ``path`` (loops erased) reached cell ``key`` at ``score``: a new cell, or one more
    visit of a known one, which keeps the shorter of its path and ``path``."""
    cell = cells.get(key)
    if cell is None:
        cells[key] = Cell(key, float(score), list(path), seen=1)
        return
    cell.seen += 1
    if len(path) < len(cell.path):
        cell.path = list(path)


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
    episode, path, score = None, LoopErasedPath(), start_score
    for ep, state_key, action, score_after, world in trajectories:
        if ep != episode:
            episode, path, score = ep, LoopErasedPath(), start_score
        path.arrive(world)
        situation = situation_of(state_key)
        if situation is not None and score is not None:
            visit_cell(cells, cell_key(situation, score), score, path.steps)
        path.leave(action, world)
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
