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

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import hnswlib
import numpy as np

from memories.embedding import Embedder
from memories.files import (
    LOCK_TIMEOUT_S,
    REBUILD_HINT,
    IndexDamagedError,
    MemoryDamagedError,
    MemoryStoreError,
    WriterLock,
    access_problem,
    check_database_file,
    check_memory_root,
    check_writable,
    connect_readonly,
    one_line,
    path_exists,
    sqlite_failure,
)

SCHEMA_VERSION = 1
_INITIAL_CAPACITY = 1024
_HNSW_M = 16
_HNSW_EF_CONSTRUCTION = 200
_HNSW_EF_SEARCH = 256  # recall@10 0.974 at 1M steps, p99 < 1 ms (bench/memory_scale.py)
TERMINAL = "terminal"  # RetrievedStep.next_world of an episode's last step when the episode ended before its step limit
_ENDED_EARLY = "e.steps < json_extract(e.params, '$.max_steps')"  # SQL: episode e ended before its step limit (terminal)
# SQL: episode e with its last step s, and the condition that it died there (ended early, a negative last reward)
_LAST_STEP = "episodes e JOIN steps s ON s.episode_id = e.id AND s.step = e.steps - 1"
_DIED = f"{_ENDED_EARLY} AND s.reward < 0"
# a retrieved step's columns (RetrievedStep after id and similarity): its successor s_{t+1} is the next stored step of
# its episode; after the last step, the episode ended (terminal) if it had fewer steps than its step limit, else unknown
_NEIGHBOUR_COLUMNS = (
    "s.action, s.reward, s.ret, s.episode_id, s.step, s.state_key, s.world_hash,"
    f" CASE WHEN n.id IS NOT NULL THEN n.world_hash WHEN {_ENDED_EARLY} THEN '{TERMINAL}' END"
    " FROM steps s JOIN episodes e ON e.id = s.episode_id LEFT JOIN steps n ON n.episode_id = s.episode_id AND n.step = s.step + 1"
)

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
CREATE INDEX IF NOT EXISTS steps_by_world ON steps(game, world_hash);
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
    """A neighbour returned by :meth:`MemoryStore.query` or :meth:`MemoryStore.query_exact`: stored step t of an
    episode, the transition (s_t, a_t, r_t, s_{t+1}) and its return G_t.

    Attributes:
        world_hash: the world-state hash of s_t, or None (no exact state identity).
        next_world: the world-state hash of s_{t+1}; :data:`TERMINAL` after the last step of an episode that ended
            before its step limit (a death, a win, a solved page); None where unknown (truncated at the step
            limit, or a successor without a hash).
    """

    id: int
    similarity: float
    action: str
    reward: float
    ret: float
    episode_id: int
    step: int
    state_key: str
    world_hash: str | None = None
    next_world: str | None = None


@dataclass(frozen=True)
class StepState:
    """The state of one stored step, as :meth:`MemoryStore.step_state` returns it.

    Attributes:
        game: the step's namespace; state_key: the abstracted state key text of s_t.
        embedding: float32 vector of shape (dim,) (a copy, writable).
        world_hash: the environment's world-state hash of s_t, or None.
    """

    game: str
    state_key: str
    embedding: np.ndarray
    world_hash: str | None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class MemoryStore:
    """An on-disk JitRL memory in ``root`` (created if missing).

    Args:
        root: the memory directory.
        embedder: the state-key embedder; its name and dimension are recorded on
            creation and must match on every later open.
        writable: False for read-only commands: a missing memory raises instead of
            being created, nothing is ever written (index files included), and the
            write methods raise.

    Raises:
        MemoryStoreError: if ``root`` is a file, the database is missing (``writable=False``),
            cannot be read (permission), is locked, is of a newer schema or was built with
            another embedder or dimension; with ``writable=True`` also if the memory is not
            writable (read-only file system, permission). :class:`MemoryDamagedError` if the
            database is damaged (not SQLite, truncated, malformed).

    Read-only stores open SQLite read-only (:func:`connect_readonly`), so they work on a
    read-only file system and on another user's memory.

    Concurrency: writers serialise on ``memory.lock`` (filelock) and write each
    episode in one SQLite transaction; readers use WAL snapshots without the lock.
    Each game's index records the ``index_epoch:<game>`` it was built at; pruning and
    rebuilding bump the epoch so that other processes reload instead of saving a
    stale index over a rebuilt one. An index file that disagrees with the rows (its
    element count differs from the game's rows up to its largest label, or that label's
    vector is not the row's) is rebuilt from the rows when loaded.
    """

    def __init__(self, root: str | Path, embedder: Embedder, writable: bool = True) -> None:
        self.root = Path(root)
        self.embedder = embedder
        self.dim = int(embedder.dim)
        self.db_path = self.root / "memory.sqlite"
        self.writable = writable
        exists = check_memory_root(self.root)
        if not writable and not exists:
            raise MemoryStoreError(f"no memory at {self.root} (no {self.db_path.name}); play an episode first or pass --memory")
        if writable:
            if path_exists(self.root):
                check_writable(self.root)  # before anything is created or opened for writing
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                (self.root / "index").mkdir(exist_ok=True)
            except OSError as exc:
                raise MemoryStoreError(f"cannot create memory directory {self.root}: {exc.strerror or one_line(exc)}") from None
            check_writable(self.root)
        self._lock = WriterLock(str(self.root / "memory.lock"), timeout=LOCK_TIMEOUT_S)
        self._indexes: dict[str, hnswlib.Index] = {}
        self._high: dict[str, int] = {}  # largest step id in each loaded index
        self._epoch: dict[str, int] = {}  # index epoch each loaded index belongs to
        self._unsaved: dict[str, int] = {}  # rows added to each index since it was last saved
        self.rebuilt_indexes: list[str] = []  # games whose index file disagreed with the rows and was rebuilt
        self.ef_search = _HNSW_EF_SEARCH  # hnswlib search breadth (recall/latency trade-off)
        self._empty_db_with_index_check()
        check_database_file(self.db_path)
        self._db = self._connect()

    # -- opening -------------------------------------------------------------------------
    def _empty_db_with_index_check(self) -> None:
        """An empty database beside index files means the database was lost, not a new memory."""
        if self.db_path.exists() and self.db_path.stat().st_size == 0:
            if any((self.root / "index").glob("*.hnsw")):
                raise MemoryStoreError(
                    f"memory database {self.db_path} is empty but index files exist; restore it from a"
                    " `jitrl memory export` file with `jitrl memory import`, or remove the index directory"
                )

    def _connect(self) -> sqlite3.Connection:
        db = None
        try:
            if self.writable:
                db = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA foreign_keys=ON")
            else:
                db = connect_readonly(self.db_path)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall()) if self._has_meta(db) else {}
            if not meta and not self.writable:
                raise MemoryStoreError(f"{self.db_path} is not a jitrl memory (it has no meta table)")
            if meta and self.writable and not self._has_index(db, "steps_by_world"):
                with self._lock:
                    db.executescript(_SCHEMA)  # adds indexes introduced after the memory was created
            if not meta:
                with self._lock:
                    db.executescript(_SCHEMA)  # idempotent DDL (IF NOT EXISTS)
                    db.execute("BEGIN IMMEDIATE")
                    db.executemany(
                        "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                        [
                            ("schema_version", str(SCHEMA_VERSION)),
                            ("embedder", self.embedder.name),
                            ("dim", str(self.dim)),
                            ("created_at", _now()),
                        ],
                    )
                    db.execute("COMMIT")
                    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise sqlite_failure(self.db_path, exc) from None
        except BaseException:
            if db is not None:
                db.close()
            raise
        problem = self._meta_problem(meta)
        if problem:
            db.close()
            raise MemoryStoreError(problem)
        self.meta = meta
        return db

    def _meta_problem(self, meta: dict[str, str]) -> str | None:
        """Why this jitrl cannot use a memory with this ``meta`` (newer schema, other embedder), or None."""
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            return f"memory {self.db_path} has schema version {version}; this jitrl reads up to {SCHEMA_VERSION}"
        if meta.get("embedder") != self.embedder.name or int(meta.get("dim", -1)) != self.dim:
            return (f"memory {self.db_path} was built with embedder {meta.get('embedder')} "
                    f"(dim {meta.get('dim')}), not {self.embedder.name} (dim {self.dim})")
        return None

    @staticmethod
    def _has_index(db: sqlite3.Connection, name: str) -> bool:
        return db.execute("SELECT 1 FROM sqlite_master WHERE type='index' AND name=?", (name,)).fetchone() is not None

    @staticmethod
    def _has_meta(db: sqlite3.Connection) -> bool:
        return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is not None

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn SQLite failures during use into one-line :class:`MemoryStoreError`."""
        try:
            yield
        except sqlite3.Error as exc:
            raise sqlite_failure(self.db_path, exc) from None

    def read(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Run a read-only SQL query on the rows (for stats and inspection); returns all rows.

        Raises:
            MemoryDamagedError: if the database is damaged; MemoryStoreError: if it is locked
                or cannot be read.
        """
        with self._guard():
            return self._db.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        """Save indexes with unsaved rows, close the database; the store must not be used afterwards."""
        try:
            if self.writable and any(self._unsaved.values()):
                with self._lock:
                    for game in [g for g, n in self._unsaved.items() if n and g in self._indexes]:
                        self._save_index_if_current(game, self.index_for(game))
        except (MemoryStoreError, OSError, TimeoutError):
            pass  # the rows are the truth; the next open catches the index up
        finally:
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
        index.set_ef(self.ef_search)
        return index

    def db_epoch(self, game: str) -> int:
        """The current index epoch of ``game`` in the database (bumped by prune and rebuild)."""
        row = self.read("SELECT value FROM meta WHERE key = ?", (f"index_epoch:{game}",))
        return int(row[0][0]) if row else 0

    def _load_index(self, game: str) -> hnswlib.Index:
        path = self.index_path(game)
        self._epoch[game] = self.db_epoch(game)
        self._unsaved[game] = 0
        if not path.exists():
            self._high[game] = 0
            return self._new_index(_INITIAL_CAPACITY)
        index = self._read_index_file(path)
        labels = index.get_ids_list()
        high = int(max(labels)) if len(labels) else 0
        if not self._agrees(game, index, high):
            return self._replace_index(game)
        self._high[game] = high
        index.set_ef(self.ef_search)
        return index

    def _agrees(self, game: str, index: hnswlib.Index, high: int) -> bool:
        """Whether a loaded index file belongs to these rows, checked cheaply (two indexed queries):
        it holds as many elements as ``game`` has rows up to its largest label ``high``, and the
        vector of that label is that row's embedding. An old database beside newer index files,
        an index of another game or memory, or one with labels of pruned rows fails this."""
        count = index.get_current_count()
        if count == 0:
            return True
        rows = self.read("SELECT COUNT(*) FROM steps WHERE game = ? AND id <= ?", (game, high))[0][0]
        if rows != count:
            return False
        row = self.read("SELECT embedding FROM steps WHERE id = ? AND game = ?", (high, game))
        if not row:
            return False
        stored = np.frombuffer(row[0][0], dtype=np.float32)
        if stored.shape != (self.dim,):
            return False
        norm = float(np.linalg.norm(stored))
        expected = stored / norm if norm > 0 else stored  # hnswlib keeps cosine vectors normalised
        item = np.asarray(index.get_items([high]), dtype=np.float32).reshape(-1)
        return item.shape == expected.shape and bool(np.allclose(item, expected, atol=1e-4))

    def _replace_index(self, game: str) -> hnswlib.Index:
        """Rebuild an index that disagrees with the rows: saved (new epoch) when writable, in memory when not."""
        self.rebuilt_indexes.append(game)
        if self.writable:
            self.rebuild_index(game)
            return self._indexes.pop(game, None) or self._new_index(_INITIAL_CAPACITY)
        index, high, _ = self._build_index(game)
        self._high[game] = high
        return index

    def _read_index_file(self, path: Path) -> hnswlib.Index:
        """Load an index file, or raise a one-line error naming it and the repair command (or, for a
        file this process may not read, saying so)."""
        problem = access_problem(path)
        if problem:
            raise MemoryStoreError(f"cannot read index file {path}: {problem}")
        index = hnswlib.Index(space="cosine", dim=self.dim)
        try:
            index.load_index(str(path), allow_replace_deleted=False)
        except Exception as exc:  # hnswlib raises RuntimeError on bad files
            raise IndexDamagedError(f"index file {path} is unreadable ({one_line(exc)}); {REBUILD_HINT}") from None
        return index

    def _catch_up(self, game: str, index: hnswlib.Index) -> int:
        """Add rows of ``game`` newer than the index's largest label; returns how many."""
        rows = self.read(
            "SELECT id, embedding FROM steps WHERE game = ? AND id > ? ORDER BY id", (game, self._high.get(game, 0))
        )
        if rows:
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            self._add(index, ids, vectors)
            self._high[game] = int(ids[-1])
            self._unsaved[game] = self._unsaved.get(game, 0) + len(rows)
        return len(rows)

    @staticmethod
    def _add(index: hnswlib.Index, ids: np.ndarray, vectors: np.ndarray, num_threads: int = 1) -> None:
        """Add vectors to the index, doubling its capacity as it fills."""
        needed = index.get_current_count() + len(ids)
        capacity = index.get_max_elements()
        if needed > capacity:
            while capacity < needed:
                capacity *= 2
            index.resize_index(capacity)
        index.add_items(vectors, ids, num_threads=num_threads)

    def index_for(self, game: str) -> hnswlib.Index:
        """The in-memory index of a game, loaded from disk and caught up with the rows.

        An index loaded before another process pruned or rebuilt ``game`` (its epoch
        changed) is dropped and reloaded.
        """
        index = self._indexes.get(game)
        if index is not None and self._epoch.get(game) != self.db_epoch(game):
            index = None
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
        self._unsaved[game] = 0

    def _save_index_if_current(self, game: str, index: hnswlib.Index) -> None:
        """Save (caller holds the lock) unless another process rebuilt the index meanwhile."""
        if self._epoch.get(game) == self.db_epoch(game):
            self._save_index(game, index)

    def rebuild_index(self, game: str, progress: Callable[[int, int], None] | None = None, num_threads: int = 0) -> int:
        """Rebuild the index of ``game`` from its rows (the truth), save it atomically, bump its epoch.

        Args:
            game: namespace.
            progress: called as ``progress(done, total)`` (rows) while adding.
            num_threads: hnswlib insertion threads (0 = all cores).

        Returns:
            the number of indexed steps.
        """
        self._require_writable()
        with self._lock:
            index, high, done = self._build_index(game, progress, num_threads)
            epoch = self._bump_epoch(game)
            self._high[game], self._epoch[game], self._unsaved[game] = high, epoch, 0
            if done:
                self._indexes[game] = index
                self._save_index(game, index)
            else:
                self._indexes.pop(game, None)
                self.index_path(game).unlink(missing_ok=True)
        return done

    def _build_index(self, game: str, progress: Callable[[int, int], None] | None = None,
                     num_threads: int = 0) -> tuple[hnswlib.Index, int, int]:
        """A new index of ``game`` built from its rows: (index, largest step id, steps indexed)."""
        total = self.read("SELECT COUNT(*) FROM steps WHERE game = ?", (game,))[0][0]
        index = self._new_index(total)
        high, done, batch = 0, 0, 50_000
        threads = num_threads or (os.cpu_count() or 1)
        while True:
            rows = self.read(
                "SELECT id, embedding FROM steps WHERE game = ? AND id > ? ORDER BY id LIMIT ?", (game, high, batch)
            )
            if not rows:
                break
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            if vectors.shape[1] != self.dim:
                raise MemoryStoreError(f"memory database {self.db_path} holds embeddings of dim {vectors.shape[1]}, not {self.dim}")
            self._add(index, ids, vectors, num_threads=threads)
            high, done = int(ids[-1]), done + len(rows)
            if progress is not None:
                progress(done, total)
        return index, high, done

    def _bump_epoch(self, game: str) -> int:
        with self._guard():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                epoch = self.db_epoch(game) + 1
                self._db.execute(
                    "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (f"index_epoch:{game}", str(epoch)),
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return epoch

    def index_info(self, game: str) -> dict[str, object]:
        """Parameters and size of a game's index: space, dim, M, ef_construction, ef, count, capacity, file bytes."""
        index = self.index_for(game)
        path = self.index_path(game)
        return {
            "space": "cosine", "dim": self.dim, "M": _HNSW_M, "ef_construction": _HNSW_EF_CONSTRUCTION,
            "ef_search": self.ef_search, "count": index.get_current_count(), "capacity": index.get_max_elements(),
            "file": str(path), "file_bytes": path.stat().st_size if path.exists() else 0,
        }

    def check_index(self, game: str) -> dict[str, int]:
        """Compare the index file of ``game`` with its rows without changing anything.

        Returns:
            ``{"rows", "indexed", "missing", "stale"}``: step rows, labels in the index
            file, rows not in the index and labels without a row of this game. An index
            that is only behind (missing rows newer than its labels) is caught up on the
            next open; one that disagrees otherwise is rebuilt on the next open, or by
            ``jitrl memory rebuild``.

        Raises:
            IndexDamagedError: if the index file is unreadable; MemoryStoreError: if this
                process may not read it.
        """
        ids = {r[0] for r in self.read("SELECT id FROM steps WHERE game = ?", (game,))}
        labels: set[int] = set()
        path = self.index_path(game)
        if path.exists():
            labels = {int(x) for x in self._read_index_file(path).get_ids_list()}
        return {"rows": len(ids), "indexed": len(labels), "missing": len(ids - labels), "stale": len(labels - ids)}

    # -- writing -------------------------------------------------------------------------
    def _require_writable(self) -> None:
        if not self.writable:
            raise MemoryStoreError(f"memory {self.root} was opened read-only")

    def write_episode(self, episode: EpisodeRecord, steps: Sequence[StepRecord]) -> int:
        """Store a finished episode and its steps atomically, then update the index.

        Idempotent on ``episode.uuid``: writing the same episode twice stores it once.

        Returns:
            the episode's row id.

        Raises:
            MemoryStoreError: if an embedding has the wrong shape (nothing is written).
        """
        return self.write_episodes([(episode, steps)])[0]

    def write_episodes(
        self, episodes: Sequence[tuple[EpisodeRecord, Sequence[StepRecord]]], update_index: bool = True
    ) -> list[int]:
        """Store several finished episodes in one transaction (all or none), then update the indexes.

        Episodes whose uuid is already stored are skipped (their existing id is returned).
        With ``update_index=False`` the indexes are left behind (a bulk import rebuilds
        them afterwards with :meth:`rebuild_index`).
        The index of each touched game is saved when its unsaved rows reach 1% of its
        size (always for small indexes); :meth:`close` saves the rest.

        Returns:
            the episodes' row ids, in order.

        Raises:
            MemoryStoreError: if an embedding has the wrong shape (nothing is written) or
                the database fails.
        """
        for _, steps in episodes:
            for s in steps:
                if np.asarray(s.embedding).shape != (self.dim,):
                    raise MemoryStoreError(
                        f"step {s.step} has an embedding of shape {np.asarray(s.embedding).shape}, expected ({self.dim},)"
                    )
        self._require_writable()
        ids: list[int] = []
        with self._lock, self._guard():
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for episode, steps in episodes:
                    ids.append(self._insert_episode(episode, steps))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            for game in dict.fromkeys(e.game for e, _ in episodes) if update_index else ():
                index = self.index_for(game)
                if self._unsaved.get(game, 0) >= max(1, index.get_current_count() // 100):
                    self._save_index_if_current(game, index)
        return ids

    def _insert_episode(self, episode: EpisodeRecord, steps: Sequence[StepRecord]) -> int:
        db = self._db
        row = db.execute("SELECT id FROM episodes WHERE uuid = ?", (episode.uuid,)).fetchone()
        if row is not None:
            return int(row[0])
        finished = episode.finished_at or _now()
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
        return episode_id

    def delete_episodes(self, episode_ids: Sequence[int], progress: Callable[[int, int], None] | None = None) -> int:
        """Delete episodes (and their steps) in one transaction, then rebuild the touched indexes.

        Returns:
            the number of episodes deleted.
        """
        self._require_writable()
        if not episode_ids:
            return 0
        with self._lock, self._guard():
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                marks = ",".join("?" * len(episode_ids))
                games = [r[0] for r in db.execute(f"SELECT DISTINCT game FROM episodes WHERE id IN ({marks})", list(episode_ids))]
                db.execute(f"DELETE FROM steps WHERE episode_id IN ({marks})", list(episode_ids))
                deleted = db.execute(f"DELETE FROM episodes WHERE id IN ({marks})", list(episode_ids)).rowcount
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            for game in games:
                self.rebuild_index(game, progress)
        return deleted

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
            neighbours sorted by decreasing similarity (ties by id), possibly fewer than k
            (labels whose row was pruned by another process are skipped).
        """
        index = self._indexes.get(game)
        if index is None:
            index = self.index_for(game)
        count = index.get_current_count()
        if count == 0 or k <= 0:
            return []
        kk = min(k, count)
        index.set_ef(max(self.ef_search, kk))
        labels, distances = index.knn_query(np.asarray(vector, dtype=np.float32).reshape(1, -1), k=kk, num_threads=1)
        pairs = [(int(l), 1.0 - float(d)) for l, d in zip(labels[0], distances[0])]
        pairs = [(l, s) for l, s in pairs if s >= min_similarity]
        if not pairs:
            return []
        rows = self._rows_by_id(game, [l for l, _ in pairs])
        out = [RetrievedStep(l, s, *rows[l]) for l, s in pairs if l in rows]
        out.sort(key=lambda r: (-r.similarity, r.id))
        return out

    def query_exact(self, game: str, world_hash: str, k: int | None) -> list[RetrievedStep]:
        """The ``k`` most recent stored steps of ``game`` taken in exactly this world state (similarity 1), most
        recent first.

        Args:
            game: namespace.
            world_hash: the environment's world-state hash (e.g. Jericho's ``get_world_state_hash``).
            k: maximum number of steps; None: every one (served by the ``steps_by_world`` index).
        """
        rows = self.read(
            f"SELECT s.id, {_NEIGHBOUR_COLUMNS} WHERE s.game = ? AND s.world_hash = ? ORDER BY s.id DESC LIMIT ?",
            (game, world_hash, -1 if k is None else k),
        )
        return [RetrievedStep(int(r[0]), 1.0, *r[1:]) for r in rows]

    def query_situation(self, game: str, prefix: str, actions: Sequence[str]) -> list[RetrievedStep]:
        """The stored steps of ``game`` taken in a situation and with one of ``actions`` (similarity 1, oldest first).

        A situation is a prefix of the state key: a text game's location and inventory
        (:func:`adapters.state_key.situation_key`), whatever the rest of the world and the observation.

        Args:
            game: namespace.
            prefix: the state keys' first characters, compared exactly.
            actions: the actions, compared in lower case (:func:`jitrl_cli.core.advantage.normalize_action`'s form).

        Returns:
            the steps in the order they were stored; [] when ``actions`` is empty. Scans the game's steps (no
            index on the prefix): 0.7 ms a step in the 12-game runs' memories of about 3,000 steps per game.
        """
        wanted = sorted({a.lower() for a in actions})
        if not wanted:
            return []
        rows = self.read(
            f"SELECT s.id, {_NEIGHBOUR_COLUMNS} WHERE s.game = ? AND substr(s.state_key, 1, ?) = ?"
            f" AND lower(s.action) IN ({','.join('?' * len(wanted))}) ORDER BY s.id",
            (game, len(prefix), prefix, *wanted),
        )
        return [RetrievedStep(int(r[0]), 1.0, *r[1:]) for r in rows]

    def episode_deaths(self, episode_ids: Iterable[int]) -> dict[int, int]:
        """Of the given episodes, those that ended in a death: episode id → the step index of its last step.

        A death is an episode that ended before its step limit with a negative reward at its last step (the death
        penalty, a lost game), as :data:`TERMINAL` marks its last step's successor. Episodes that did not die, or are
        not stored, are left out; {} when ``episode_ids`` is empty.
        """
        ids = sorted({int(i) for i in episode_ids})
        if not ids:
            return {}
        rows = self.read(f"SELECT e.id, s.step FROM {_LAST_STEP} WHERE {_DIED} AND e.id IN ({','.join('?' * len(ids))})", ids)
        return {int(i): int(t) for i, t in rows}

    def count_deaths(self, game: str, before_episode: int | None = None) -> int:
        """How many stored episodes of ``game`` ended in a death (as :meth:`episode_deaths` tells one: before the step
        limit, with a negative reward at the last step); 0 for a game with no stored episode. ``before_episode``: only
        the episodes stored before the one with this row id (what an earlier episode saw; None: all)."""
        bound = -1 if before_episode is None else int(before_episode)
        return int(self.read(f"SELECT COUNT(*) FROM {_LAST_STEP} WHERE e.game = ? AND {_DIED} AND (? < 0 OR e.id < ?)",
                             (game, bound, bound))[0][0])

    def has_scored(self, game: str, start_score: float | None = None, before_episode: int | None = None) -> bool:
        """Whether a stored step of ``game`` scored: its score is above the score after the step before it in its
        episode, or above ``start_score`` (the score a new episode starts with; the score before an episode's first step
        is not stored, so without it a point at a first step is not seen). Stops at the first such step.
        ``before_episode``: only the steps of episodes stored before the one with this row id (None: all)."""
        bound = -1 if before_episode is None else int(before_episode)
        return bool(self.read(
            "SELECT EXISTS (SELECT 1 FROM steps s JOIN steps p ON p.episode_id = s.episode_id AND p.step = s.step - 1"
            " WHERE s.game = ? AND s.score > p.score AND (? < 0 OR s.episode_id < ?))"
            " OR EXISTS (SELECT 1 FROM steps WHERE game = ? AND score > ? AND (? < 0 OR episode_id < ?))",
            (game, bound, bound, game, start_score, bound, bound))[0][0])

    def step_tasks(self, step_ids: Iterable[int]) -> dict[int, str | None]:
        """The task of each stored step's episode (its ``params["task"]``; None where it was not recorded)."""
        ids = sorted({int(i) for i in step_ids if int(i) >= 0})
        if not ids:
            return {}
        rows = self.read("SELECT s.id, json_extract(e.params, '$.task') FROM steps s JOIN episodes e ON e.id = s.episode_id"
                         f" WHERE s.id IN ({','.join('?' * len(ids))})", ids)
        return {int(i): t for i, t in rows}

    def best_episode_steps(self, game: str) -> list[tuple[str, float | None, str | None]]:
        """The steps of ``game``'s best stored episode, in order, as (action, score after the step, world hash
        before it); [] when none is stored. The best episode reached the highest score any stored step shows
        (the score it ended with may be lower: a death), the earliest among those that did (then the oldest)."""
        best = self.read("SELECT episode_id FROM steps WHERE game = ? AND score = (SELECT MAX(score) FROM steps WHERE game = ?)"
                         " GROUP BY episode_id ORDER BY MIN(step), episode_id LIMIT 1", (game, game))
        if not best:
            return []
        rows = self.read("SELECT action, score, world_hash FROM steps WHERE episode_id = ? ORDER BY step", (best[0][0],))
        return [(str(a), None if sc is None else float(sc), wh) for a, sc, wh in rows]

    def trajectories(self, game: str) -> list[tuple[int, str, str, float | None, str | None]]:
        """Every stored step of ``game`` in episode order, for an archive of the states reached (``--go-explore``).

        Returns:
            rows (episode id, state key of s_t, action a_t, score after the step or None, world hash of s_t or None),
            ordered by episode and step; [] for a game with no stored step.
        """
        rows = self.read("SELECT episode_id, state_key, action, score, world_hash FROM steps WHERE game = ?"
                         " ORDER BY episode_id, step", (game,))
        return [(int(e), str(k), str(a), None if sc is None else float(sc), w) for e, k, a, sc, w in rows]

    def episode_param_counts(self, game: str, name: str) -> dict[str, int]:
        """How many stored episodes of ``game`` recorded each value of the param ``name`` (episodes without it left
        out), e.g. the archive cell each episode returned to (``--go-explore``)."""
        rows = self.read("SELECT json_extract(params, '$.' || ?) AS v, COUNT(*) FROM episodes WHERE game = ?"
                         " AND v IS NOT NULL GROUP BY v", (name, game))
        return {str(v): int(n) for v, n in rows}

    def transitions(self, game: str) -> list[tuple[int, int, str | None, str, float, float]]:
        """Every stored step of ``game`` in episode order, for a value backup over the transition graph.

        Returns:
            rows (step id, episode id, world hash or None, action, reward r_t, return G_t), ordered by
            episode and step, so that a row's successor state is the next row's world hash when
            both belong to the same episode.
        """
        rows = self.read(
            "SELECT id, episode_id, world_hash, action, reward, ret FROM steps WHERE game = ? ORDER BY episode_id, step",
            (game,),
        )
        return [(int(r[0]), int(r[1]), r[2], r[3], float(r[4]), float(r[5])) for r in rows]

    def world_hash_counts(self, game: str, hashes: Iterable[str]) -> dict[str, int]:
        """How many stored steps of ``game`` were taken in each of these world states."""
        hashes = [h for h in dict.fromkeys(hashes) if h]
        if not hashes:
            return {}
        marks = ",".join("?" * len(hashes))
        rows = self.read(
            f"SELECT world_hash, COUNT(*) FROM steps WHERE game = ? AND world_hash IN ({marks}) GROUP BY world_hash",
            [game, *hashes],
        )
        return {h: 0 for h in hashes} | {r[0]: int(r[1]) for r in rows}

    def _rows_by_id(self, game: str, ids: Iterable[int]) -> dict[int, tuple]:
        ids = list(ids)
        marks = ",".join("?" * len(ids))
        rows = self.read(f"SELECT s.id, {_NEIGHBOUR_COLUMNS} WHERE s.game = ? AND s.id IN ({marks})", [game, *ids])
        return {int(r[0]): tuple(r[1:]) for r in rows}

    def count_steps(self, game: str | None = None) -> int:
        """Number of stored steps (of one game, or all)."""
        if game is None:
            return int(self.read("SELECT COUNT(*) FROM steps")[0][0])
        return int(self.read("SELECT COUNT(*) FROM steps WHERE game = ?", (game,))[0][0])

    def count_episodes(self, game: str | None = None) -> int:
        """Number of stored episodes (of one game, or all)."""
        if game is None:
            return int(self.read("SELECT COUNT(*) FROM episodes")[0][0])
        return int(self.read("SELECT COUNT(*) FROM episodes WHERE game = ?", (game,))[0][0])

    def games(self) -> list[str]:
        """Game namespaces that have at least one episode."""
        return [r[0] for r in self.read("SELECT DISTINCT game FROM episodes ORDER BY game")]

    def episode_uuids(self) -> dict[int, str]:
        """Every stored episode's uuid by its row id: ``{episode id: uuid}``, in id order (empty for an empty memory).

        Raises:
            MemoryStoreError: if the database cannot be read (MemoryDamagedError if it is damaged).
        """
        return {int(r[0]): r[1] for r in self.read("SELECT id, uuid FROM episodes ORDER BY id")}

    def episode_ids(self, games: Iterable[str]) -> list[int]:
        """Row ids of every stored episode of these games, in id order; ``[]`` for no games or unknown games.

        Raises:
            MemoryStoreError: if the database cannot be read (MemoryDamagedError if it is damaged).
        """
        games = list(dict.fromkeys(games))
        if not games:
            return []
        marks = ",".join("?" * len(games))
        return [int(r[0]) for r in self.read(f"SELECT id FROM episodes WHERE game IN ({marks}) ORDER BY id", games)]

    def count_steps_of_episodes(self, episode_ids: Iterable[int]) -> int:
        """Number of stored steps of these episodes (ids that are not stored count 0; no ids: 0).

        Raises:
            MemoryStoreError: if the database cannot be read (MemoryDamagedError if it is damaged).
        """
        ids = [int(i) for i in dict.fromkeys(episode_ids)]
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        return int(self.read(f"SELECT COUNT(*) FROM steps WHERE episode_id IN ({marks})", ids)[0][0])

    def step_state(self, episode_id: int, step: int) -> StepState | None:
        """The stored state of step ``step`` (0-based) of episode ``episode_id``, or None if there is no such step.

        Returns:
            a :class:`StepState`: game, state key, embedding (a float32 copy of shape (dim,)) and world hash
            (None when the step has none).

        Raises:
            MemoryStoreError: if the database cannot be read (MemoryDamagedError if it is damaged).
        """
        rows = self.read(
            "SELECT game, state_key, embedding, world_hash FROM steps WHERE episode_id = ? AND step = ?",
            (int(episode_id), int(step)),
        )
        if not rows:
            return None
        game, key, blob, world_hash = rows[0]
        return StepState(game, key, np.frombuffer(blob, dtype=np.float32).copy(), world_hash)

    def require_game(self, game: str) -> str:
        """Return ``game`` if the memory has episodes of it.

        Raises:
            MemoryStoreError: naming the games that exist.
        """
        games = self.games()
        if game not in games:
            known = ", ".join(games) or "none yet"
            raise MemoryStoreError(f"no game {game!r} in memory {self.root} (games: {known})")
        return game
