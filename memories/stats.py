"""Read-only summaries of a memory: per-game statistics, episode lists, what each action earned."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from memories.store import MemoryStore


@dataclass
class GameStats:
    """Statistics of one game namespace of a memory (``jitrl memory stats``).

    Returns are the stored discounted returns G_t (score points); ``returns`` holds
    their min, 10th/50th/90th percentiles, max, mean, and the share of steps with
    G > 0 and G < 0. ``data_bytes`` is the size of the game's rows (text and
    embeddings); the database file itself is shared by all games.
    """

    game: str
    episodes: int
    steps: int
    distinct_actions: int
    distinct_states: int
    distinct_world_states: int
    returns: dict[str, float]
    best_score: float | None
    best_episode: int | None
    mean_score: float | None
    max_score: float | None
    first_episode_at: str | None
    last_episode_at: str | None
    data_bytes: int
    index: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


def game_stats(store: MemoryStore, game: str) -> GameStats:
    """Compute :class:`GameStats` for ``game`` (one pass over its steps' returns)."""
    ep = store.read(
        "SELECT COUNT(*), MAX(score), AVG(score), MAX(max_score), MIN(finished_at), MAX(finished_at)"
        " FROM episodes WHERE game = ?", (game,)
    )[0]
    best = store.read("SELECT id FROM episodes WHERE game = ? ORDER BY score DESC, id LIMIT 1", (game,))
    st = store.read(
        "SELECT COUNT(*), COUNT(DISTINCT lower(action)), COUNT(DISTINCT state_key), COUNT(DISTINCT world_hash),"
        " COALESCE(SUM(LENGTH(state_key) + LENGTH(action) + LENGTH(embedding) + COALESCE(LENGTH(observation), 0)), 0)"
        " FROM steps WHERE game = ?", (game,)
    )[0]
    rets = np.array([r[0] for r in store.read("SELECT ret FROM steps WHERE game = ?", (game,))], dtype=np.float64)
    if rets.size:
        p10, p50, p90 = np.percentile(rets, [10, 50, 90])
        returns = {"min": float(rets.min()), "p10": float(p10), "p50": float(p50), "p90": float(p90),
                   "max": float(rets.max()), "mean": float(rets.mean()),
                   "positive": float((rets > 0).mean()), "negative": float((rets < 0).mean())}
    else:
        returns = {}
    return GameStats(
        game=game, episodes=int(ep[0]), steps=int(st[0]), distinct_actions=int(st[1]), distinct_states=int(st[2]),
        distinct_world_states=int(st[3]), returns=returns, best_score=ep[1], best_episode=best[0][0] if best else None,
        mean_score=ep[2], max_score=ep[3], first_episode_at=ep[4], last_episode_at=ep[5], data_bytes=int(st[4]),
        index=store.index_info(game),
    )


@dataclass
class EpisodeRow:
    """One stored episode (``jitrl memory list``)."""

    id: int
    uuid: str
    game: str
    started_at: str
    finished_at: str
    score: float
    max_score: float | None
    steps: int
    model: str | None
    params: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


def list_episodes(store: MemoryStore, game: str | None = None, limit: int | None = None) -> list[EpisodeRow]:
    """Stored episodes, oldest first (the last ``limit`` of them when given)."""
    where, args = ("WHERE game = ?", [game]) if game else ("", [])
    sql = f"SELECT id, uuid, game, started_at, finished_at, score, max_score, steps, model, params FROM episodes {where} ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    rows = store.read(sql, args)
    return [EpisodeRow(*r[:9], params=json.loads(r[9] or "{}")) for r in reversed(rows)]


def find_episode_ids(store: MemoryStore, ref: str, game: str | None = None) -> list[int]:
    """The episodes a user's reference names: the episode with that id if ``ref`` is one, else every
    episode whose uuid starts with ``ref`` (uuids are hex, so a prefix may be all digits).

    Returns:
        matching episode ids, oldest first (empty: no match; several: an ambiguous prefix).
    """
    where, args = (" AND game = ?", [game]) if game else ("", [])
    if ref.isdigit():
        rows = store.read(f"SELECT id FROM episodes WHERE id = ?{where}", [int(ref), *args])
        if rows:
            return [rows[0][0]]
    if not ref or any(c in "%_\\" for c in ref):  # LIKE's wildcards never occur in a uuid
        return []
    rows = store.read(f"SELECT id FROM episodes WHERE uuid LIKE ?{where} ORDER BY id", [ref + "%", *args])
    return [r[0] for r in rows]


@dataclass
class ActionSummary:
    """How an action fared across all stored steps of a game: times taken, mean and best return."""

    action: str
    count: int
    mean_return: float
    max_return: float
    mean_reward: float


def action_summary(store: MemoryStore, game: str, limit: int = 10) -> list[ActionSummary]:
    """The ``limit`` actions with the highest mean return G (ties: most taken)."""
    rows = store.read(
        "SELECT lower(action) AS a, COUNT(*), AVG(ret), MAX(ret), AVG(reward) FROM steps WHERE game = ?"
        " GROUP BY a ORDER BY AVG(ret) DESC, COUNT(*) DESC LIMIT ?", (game, limit)
    )
    return [ActionSummary(*r) for r in rows]
