"""Repairing a memory: rebuild the derived indexes, salvage a damaged database.

The SQLite rows are the truth and the hnswlib indexes are derived from them, so
``rebuild`` first makes sure the rows are readable. A damaged database is never
edited in place: the episodes that can still be read whole (every step present)
are copied into a new file, the damaged file is kept beside it as
``memory.sqlite.damaged-<timestamp>``, and the indexes are rebuilt from the copy.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from filelock import FileLock

from memories.embedding import Embedder
from memories.store import SQLITE_MAGIC, EpisodeRecord, MemoryStore, MemoryStoreError, StepRecord, check_database_file

Progress = Callable[[str, int, int], None]


@dataclass
class RebuildReport:
    """What :func:`rebuild` did.

    Attributes:
        indexed: steps indexed per game.
        removed_indexes: index files deleted because their game has no rows.
        salvaged: True when the database was damaged and copied.
        episodes_kept / episodes_lost: episodes copied whole / left behind (salvage only).
        damaged_file: where the damaged database was moved (salvage only).
    """

    indexed: dict[str, int] = field(default_factory=dict)
    removed_indexes: list[str] = field(default_factory=list)
    salvaged: bool = False
    episodes_kept: int = 0
    episodes_lost: int = 0
    damaged_file: str | None = None


def database_problem(db_path: Path) -> str | None:
    """Why the database at ``db_path`` cannot be trusted, or None if it passes SQLite's ``quick_check``.

    Cost: one pass over the file (about a second per GB here).
    """
    try:
        check_database_file(db_path)
    except MemoryStoreError as exc:
        return str(exc)
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return f"memory database {db_path}: {exc}"
    problems = [r[0] for r in rows if r[0] != "ok"]
    return f"memory database {db_path}: {problems[0]}" if problems else None


_EPISODE_COLUMNS = "id, uuid, game, started_at, finished_at, score, max_score, steps, model, params"
_STEP_COLUMNS = "id, episode_id, step, state_key, embedding, action, reward, ret, score, world_hash, observation"


def _max_id(damaged: sqlite3.Connection, table: str) -> int:
    for sql in (f"SELECT seq FROM sqlite_sequence WHERE name = '{table}'", f"SELECT MAX(id) FROM {table}"):
        try:
            row = damaged.execute(sql).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row and row[0] is not None:
            return int(row[0])
    return 0


def _read_rows(damaged: sqlite3.Connection, table: str, columns: str) -> list[tuple]:
    """All readable rows of a table: one scan, or, when the scan hits a bad page, one rowid
    lookup per id so that a bad page loses only its own rows."""
    try:
        return damaged.execute(f"SELECT {columns} FROM {table} ORDER BY id").fetchall()
    except sqlite3.DatabaseError:
        pass
    rows = []
    for row_id in range(1, _max_id(damaged, table) + 1):
        try:
            row = damaged.execute(f"SELECT {columns} FROM {table} WHERE id = ?", (row_id,)).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None:
            rows.append(row)
    return rows


def _steps_by_episode(damaged: sqlite3.Connection, dim: int) -> dict[int, list[StepRecord]]:
    """Readable steps grouped by episode id, in step order; steps with a malformed embedding are dropped."""
    out: dict[int, list[StepRecord]] = {}
    for r in _read_rows(damaged, "steps", _STEP_COLUMNS):
        vector = np.frombuffer(r[4], dtype=np.float32) if isinstance(r[4], bytes) else np.empty(0, np.float32)
        if vector.shape != (dim,):
            continue
        out.setdefault(r[1], []).append(StepRecord(step=r[2], state_key=r[3], embedding=vector, action=r[5], reward=r[6],
                                                   ret=r[7], score=r[8], world_hash=r[9], observation=r[10]))
    for steps in out.values():
        steps.sort(key=lambda s: s.step)
    return out


def _readable_copy(damaged: Path, work: Path) -> Path:
    """Copy a damaged database (and its WAL) into ``work`` so that SQLite reads what is left.

    A truncated file has a header page count larger than the file, which makes SQLite
    refuse every page; the copy's count is set to the pages actually present
    (header field at byte offset 28, SQLite file format §1.3). The original is not touched.
    """
    copy = work / "copy.sqlite"
    data = bytearray(damaged.read_bytes())
    if data[:16] == SQLITE_MAGIC and len(data) >= 100:
        page_size = struct.unpack(">H", data[16:18])[0]
        page_size = 65536 if page_size == 1 else page_size
        pages = len(data) // page_size
        del data[pages * page_size:]
        data[28:32] = struct.pack(">I", pages)
    copy.write_bytes(bytes(data))
    wal = damaged.with_name(damaged.name + "-wal")
    if wal.exists():
        shutil.copyfile(wal, work / "copy.sqlite-wal")
    return copy


def salvage_database(root: Path, embedder: Embedder, progress: Progress | None = None) -> RebuildReport:
    """Copy every wholly readable episode of a damaged ``memory.sqlite`` into a new database.

    The damaged file (with its ``-wal``/``-shm``) is renamed to
    ``memory.sqlite.damaged-<UTC timestamp>``, never deleted. An episode is kept
    only if its row and all of its ``steps`` rows can be read.

    Raises:
        MemoryStoreError: if the memory directory cannot be written.
    """
    db_path = root / "memory.sqlite"
    report = RebuildReport(salvaged=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    damaged_path = db_path.with_name(f"{db_path.name}.damaged-{stamp}")
    with FileLock(str(root / "memory.lock"), timeout=300):
        for suffix in ("", "-wal", "-shm"):
            src = db_path.with_name(db_path.name + suffix)
            if src.exists():
                os.replace(src, damaged_path.with_name(damaged_path.name + suffix))
        report.damaged_file = str(damaged_path)
        kept: list[tuple[EpisodeRecord, list[StepRecord]]] = []
        with tempfile.TemporaryDirectory(dir=root, prefix="salvage-") as work:
            copy = _readable_copy(damaged_path, Path(work))
            damaged = None
            try:
                damaged = sqlite3.connect(copy)
                episodes = _read_rows(damaged, "episodes", _EPISODE_COLUMNS)
                steps_of = _steps_by_episode(damaged, int(embedder.dim))
            except sqlite3.DatabaseError:
                episodes, steps_of = [], {}
            for i, row in enumerate(episodes):
                steps = steps_of.get(row[0], [])
                if len(steps) != row[7] or [s.step for s in steps] != list(range(row[7])):
                    report.episodes_lost += 1
                    continue
                kept.append((EpisodeRecord(uuid=row[1], game=row[2], started_at=row[3], finished_at=row[4], score=row[5],
                                           max_score=row[6], steps=row[7], model=row[8], params=_params(row[9])), steps))
                if progress is not None:
                    progress("salvage", i + 1, len(episodes))
            if damaged is not None:
                damaged.close()
    store = MemoryStore(root, embedder)
    try:
        store.write_episodes(kept, update_index=False)
    finally:
        store.close()
    report.episodes_kept = len(kept)
    return report


def _params(text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def rebuild(root: Path, embedder: Embedder, progress: Progress | None = None) -> RebuildReport:
    """Rebuild every index of the memory in ``root`` from its rows, salvaging a damaged database first.

    Index files of games without rows (and leftover temporary files) are removed.

    Raises:
        MemoryStoreError: if there is no memory at ``root`` or it belongs to another embedder.
    """
    db_path = root / "memory.sqlite"
    if not db_path.exists():
        raise MemoryStoreError(f"no memory at {root} (no {db_path.name})")
    problem = database_problem(db_path)
    report = salvage_database(root, embedder, progress) if problem else RebuildReport()
    store = MemoryStore(root, embedder)
    try:
        games = [r[0] for r in store.read("SELECT DISTINCT game FROM steps ORDER BY game")]
        for game in games:
            report.indexed[game] = store.rebuild_index(
                game, (lambda d, t, g=game: progress(g, d, t)) if progress else None
            )
        wanted = {store.index_path(g).name for g in games}
        for path in sorted((root / "index").glob("*")):
            if path.name not in wanted and (path.suffix == ".hnsw" or path.name.endswith(".tmp")):
                path.unlink()
                report.removed_indexes.append(path.name)
    finally:
        store.close()
    return report
