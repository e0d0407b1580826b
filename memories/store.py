"""The experience store: SQLite rows are the truth, one hnswlib index per game is derived.

Layout of a memory directory::

    memory.sqlite        episodes + steps (WAL journal), schema version and embedder in `meta`
    index/<game>.hnsw    hnswlib index (cosine) over the steps' state-key embeddings, label = step id
    memory.lock          inter-process write lock (filelock)

An episode is written in one SQLite transaction at its end, so readers never
see half an episode; the index is then brought up to date and saved atomically
(write to a temporary file, then ``os.replace``). An index that is behind the
rows (e.g. after a crash between the two) is caught up from the rows on open.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import hnswlib
import numpy as np
from filelock import FileLock

from memories.embedding import Embedder

SCHEMA_VERSION = 1
_INITIAL_CAPACITY = 1024
_HNSW_M = 16
_HNSW_EF_CONSTRUCTION = 200
_HNSW_EF_SEARCH = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS episodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    game TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    score REAL NOT NULL,
    max_score REAL,
    steps INTEGER NOT NULL,
    model TEXT,
    params TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    episode_id INTEGER NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
    game TEXT NOT NULL,
    step INTEGER NOT NULL,
    state_key TEXT NOT NULL,
    action TEXT NOT NULL,
    reward REAL NOT NULL,
    ret REAL NOT NULL,
    score REAL,
    world_hash TEXT,
    observation TEXT,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS steps_by_game ON steps(game, id);
CREATE INDEX IF NOT EXISTS steps_by_episode ON steps(episode_id, step);
CREATE INDEX IF NOT EXISTS episodes_by_game ON episodes(game, id);
"""


class MemoryStoreError(Exception):
    """The memory cannot be opened or used as asked (corrupt file, other embedder, bad id).

    The message names the file and, where it helps, the command that repairs it.
    """


@dataclass
class StepRecord:
    """One step of a finished episode, as stored.

    Attributes:
        step: 0-based step index t within the episode.
        state_key: the abstracted state key text of s_t.
        embedding: float32 vector of shape (dim,), the embedded state key.
        action: the action a_t taken.
        reward: r_t (score points, death penalty included).
        ret: the discounted return G_t.
        score: the game score after the step.
        world_hash: the environment's world-state hash of s_t (exact-match key), if any.
        observation: the observation text of s_t.
    """

    step: int
    state_key: str
    embedding: np.ndarray
    action: str
    reward: float
    ret: float
    score: float | None = None
    world_hash: str | None = None
    observation: str | None = None


@dataclass
class EpisodeRecord:
    """A finished episode's summary row.

    Attributes:
        uuid: unique id chosen by the runner (makes writes idempotent).
        game: the namespace (game name or web suite/site).
        score: final score; max_score: the game's maximum (None if unknown).
        steps: number of steps; model: model file name; params: run parameters (JSON-able).
        started_at / finished_at: ISO-8601 UTC timestamps.
    """

    uuid: str
    game: str
    score: float
    steps: int
    max_score: float | None = None
    model: str | None = None
    params: dict = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""


@dataclass(frozen=True)
class RetrievedStep:
    """A neighbour returned by :meth:`MemoryStore.query`."""

    id: int
    similarity: float
    action: str
    reward: float
    ret: float
    episode_id: int
    step: int
    state_key: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class MemoryStore:
    """An on-disk JitRL memory in ``root`` (created if missing).

    Args:
        root: the memory directory.
        embedder: the state-key embedder; its name and dimension are recorded on
            creation and must match on every later open.

    Raises:
        MemoryStoreError: if the database is unreadable, of a newer schema, or was
            built with another embedder or dimension.
    """

    def __init__(self, root: str | Path, embedder: Embedder) -> None:
        self.root = Path(root)
        self.embedder = embedder
        self.dim = int(embedder.dim)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "index").mkdir(exist_ok=True)
        except OSError as exc:
            raise MemoryStoreError(f"cannot create memory directory {self.root}: {exc.strerror}") from None
        self.db_path = self.root / "memory.sqlite"
        self._lock = FileLock(str(self.root / "memory.lock"), timeout=120)
        self._indexes: dict[str, hnswlib.Index] = {}
        self._db = self._connect()

    # -- opening -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            with self._lock:
                db.executescript(_SCHEMA)  # idempotent DDL (IF NOT EXISTS)
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                if not meta:
                    with db:
                        db.execute("BEGIN IMMEDIATE")
                        db.executemany(
                            "INSERT INTO meta(key, value) VALUES (?, ?)",
                            [
                                ("schema_version", str(SCHEMA_VERSION)),
                                ("embedder", self.embedder.name),
                                ("dim", str(self.dim)),
                                ("created_at", _now()),
                            ],
                        )
                    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise MemoryStoreError(
                f"memory database {self.db_path} is unreadable ({exc}); move it away or restore it"
                " from `jitrl memory export`, then run `jitrl memory rebuild`"
            ) from None
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise MemoryStoreError(
                f"memory {self.db_path} has schema version {version}; this jitrl reads up to {SCHEMA_VERSION}"
            )
        if meta.get("embedder") != self.embedder.name or int(meta.get("dim", -1)) != self.dim:
            raise MemoryStoreError(
                f"memory {self.db_path} was built with embedder {meta.get('embedder')} "
                f"(dim {meta.get('dim')}), not {self.embedder.name} (dim {self.dim})"
            )
        self.meta = meta
        return db

    def close(self) -> None:
        """Close the database connection; the store must not be used afterwards."""
        self._db.close()
        self._indexes.clear()

    def __enter__(self) -> "MemoryStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- index ---------------------------------------------------------------------------
    def index_path(self, game: str) -> Path:
        """Path of the hnswlib index file of a game namespace."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in game)
        return self.root / "index" / f"{safe}.hnsw"

    def _new_index(self, capacity: int) -> hnswlib.Index:
        index = hnswlib.Index(space="cosine", dim=self.dim)
        index.init_index(max_elements=max(capacity, _INITIAL_CAPACITY), ef_construction=_HNSW_EF_CONSTRUCTION, M=_HNSW_M)
        index.set_ef(_HNSW_EF_SEARCH)
        return index

    def _load_index(self, game: str) -> hnswlib.Index:
        path = self.index_path(game)
        if not path.exists():
            return self._new_index(_INITIAL_CAPACITY)
        index = hnswlib.Index(space="cosine", dim=self.dim)
        try:
            index.load_index(str(path), allow_replace_deleted=False)
        except Exception as exc:  # hnswlib raises RuntimeError on bad files
            raise MemoryStoreError(
                f"index file {path} is unreadable ({exc}); run `jitrl memory rebuild`"
            ) from None
        index.set_ef(_HNSW_EF_SEARCH)
        return index

    def _catch_up(self, game: str, index: hnswlib.Index) -> int:
        """Add rows of ``game`` newer than the index's largest label; returns how many."""
        labels = index.get_ids_list()
        indexed_max = int(max(labels)) if len(labels) else 0
        rows = self._db.execute(
            "SELECT id, embedding FROM steps WHERE game = ? AND id > ? ORDER BY id", (game, indexed_max)
        ).fetchall()
        if rows:
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            self._add(index, ids, vectors)
        return len(rows)

    @staticmethod
    def _add(index: hnswlib.Index, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors to the index, doubling its capacity as it fills."""
        needed = index.get_current_count() + len(ids)
        capacity = index.get_max_elements()
        if needed > capacity:
            while capacity < needed:
                capacity *= 2
            index.resize_index(capacity)
        index.add_items(vectors, ids, num_threads=1)

    def index_for(self, game: str) -> hnswlib.Index:
        """The in-memory index of a game, loaded from disk and caught up with the rows."""
        index = self._indexes.get(game)
        if index is None:
            index = self._load_index(game)
            self._indexes[game] = index
        self._catch_up(game, index)
        return index

    def refresh(self, game: str) -> None:
        """Pick up episodes that other processes wrote since this store loaded ``game``."""
        self.index_for(game)

    def _save_index(self, game: str, index: hnswlib.Index) -> None:
        path = self.index_path(game)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            index.save_index(tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # -- writing -------------------------------------------------------------------------
    def write_episode(self, episode: EpisodeRecord, steps: Sequence[StepRecord]) -> int:
        """Store a finished episode and its steps atomically, then update the index.

        Idempotent on ``episode.uuid``: writing the same episode twice stores it once.

        Returns:
            the episode's row id.

        Raises:
            MemoryStoreError: if an embedding has the wrong shape (nothing is written).
        """
        for s in steps:
            if np.asarray(s.embedding).shape != (self.dim,):
                raise MemoryStoreError(
                    f"step {s.step} has an embedding of shape {np.asarray(s.embedding).shape}, expected ({self.dim},)"
                )
        finished = episode.finished_at or _now()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT id FROM episodes WHERE uuid = ?", (episode.uuid,)).fetchone()
                if row is not None:
                    db.execute("ROLLBACK")
                    return int(row[0])
                cur = db.execute(
                    "INSERT INTO episodes(uuid, game, started_at, finished_at, score, max_score, steps, model, params)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        episode.uuid, episode.game, episode.started_at or finished, finished,
                        float(episode.score), episode.max_score, int(episode.steps), episode.model,
                        json.dumps(episode.params, sort_keys=True),
                    ),
                )
                episode_id = int(cur.lastrowid)
                db.executemany(
                    "INSERT INTO steps(episode_id, game, step, state_key, action, reward, ret, score,"
                    " world_hash, observation, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            episode_id, episode.game, s.step, s.state_key, s.action, float(s.reward),
                            float(s.ret), s.score, s.world_hash, s.observation,
                            np.asarray(s.embedding, dtype=np.float32).tobytes(),
                        )
                        for s in steps
                    ],
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            # Another process may have saved a newer index file: reload it, then catch up.
            self._indexes.pop(episode.game, None)
            index = self.index_for(episode.game)
            self._save_index(episode.game, index)
        return episode_id

    # -- reading -------------------------------------------------------------------------
    def query(
        self, game: str, vector: np.ndarray, k: int = 10, min_similarity: float = 0.0
    ) -> list[RetrievedStep]:
        """The k nearest stored steps of ``game`` to ``vector`` with similarity ≥ threshold.

        Args:
            game: namespace.
            vector: float32 query of shape (dim,), unit norm.
            k: maximum number of neighbours.
            min_similarity: cosine similarity threshold in [−1, 1].

        Returns:
            neighbours sorted by decreasing similarity (ties by id), possibly fewer than k.
        """
        index = self._indexes.get(game)
        if index is None:
            index = self.index_for(game)
        count = index.get_current_count()
        if count == 0 or k <= 0:
            return []
        kk = min(k, count)
        index.set_ef(max(_HNSW_EF_SEARCH, kk))
        labels, distances = index.knn_query(np.asarray(vector, dtype=np.float32).reshape(1, -1), k=kk, num_threads=1)
        pairs = [(int(l), 1.0 - float(d)) for l, d in zip(labels[0], distances[0])]
        pairs = [(l, s) for l, s in pairs if s >= min_similarity]
        if not pairs:
            return []
        rows = self._rows_by_id([l for l, _ in pairs])
        out = [
            RetrievedStep(l, s, *rows[l]) for l, s in pairs if l in rows
        ]
        out.sort(key=lambda r: (-r.similarity, r.id))
        return out

    def _rows_by_id(self, ids: Iterable[int]) -> dict[int, tuple]:
        ids = list(ids)
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f"SELECT id, action, reward, ret, episode_id, step, state_key FROM steps WHERE id IN ({marks})", ids
        ).fetchall()
        return {int(r[0]): tuple(r[1:]) for r in rows}

    def count_steps(self, game: str | None = None) -> int:
        """Number of stored steps (of one game, or all)."""
        if game is None:
            return int(self._db.execute("SELECT COUNT(*) FROM steps").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM steps WHERE game = ?", (game,)).fetchone()[0])

    def count_episodes(self, game: str | None = None) -> int:
        """Number of stored episodes (of one game, or all)."""
        if game is None:
            return int(self._db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM episodes WHERE game = ?", (game,)).fetchone()[0])

    def games(self) -> list[str]:
        """Game namespaces that have at least one episode."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT game FROM episodes ORDER BY game")]
