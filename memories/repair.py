"""Repairing a memory: rebuild the derived indexes, salvage a damaged database.

The SQLite rows are the truth and the hnswlib indexes are derived from them, so
``rebuild`` first makes sure the rows are readable. A damaged database is never
edited in place: the episodes that can still be read whole (every step present)
are copied into a new file (an episode whose own row is lost is rebuilt from its
steps when they are certainly all there), the damaged file is kept beside it as
``memory.sqlite.damaged-<timestamp>``, and the indexes are rebuilt from the copy.
What could not be copied is counted. A memory that cannot be written (read-only file
system, permission) or read (permission) is refused with one line, never salvaged.
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

from memories.embedding import Embedder
from memories.files import (
    LOCK_TIMEOUT_S,
    SQLITE_MAGIC,
    MemoryDamagedError,
    MemoryStoreError,
    WriterLock,
    check_database_file,
    check_memory_root,
    check_writable,
    connect_readonly,
    one_line,
    sqlite_failure,
)
from memories.store import EpisodeRecord, MemoryStore, StepRecord

Progress = Callable[[str, int, int], None]


@dataclass
class RebuildReport:
    """What :func:`rebuild` did.

    Attributes:
        indexed: steps indexed per game.
        removed_indexes: index files deleted because their game has no rows.
        salvaged: True when the database was damaged and copied.
        episodes_kept: episodes copied whole (salvage only), those rebuilt from their steps included.
        episodes_rebuilt: of those, episodes whose own row was unreadable and that were rebuilt from
            their complete steps (their uuid, model, parameters and dates are lost).
        episodes_lost: episodes known to have existed (a readable row, or a readable step) that could not
            be copied whole.
        steps_kept / steps_lost: readable steps copied / left behind because their episode was incomplete.
        episodes_table_damaged: the episodes table could not be read whole, so episodes with neither a
            readable row nor a readable step cannot be counted.
        damaged_file: where the damaged database was moved (salvage only).
    """

    indexed: dict[str, int] = field(default_factory=dict)
    removed_indexes: list[str] = field(default_factory=list)
    salvaged: bool = False
    episodes_kept: int = 0
    episodes_rebuilt: int = 0
    episodes_lost: int = 0
    steps_kept: int = 0
    steps_lost: int = 0
    episodes_table_damaged: bool = False
    damaged_file: str | None = None


def database_problem(db_path: Path) -> str | None:
    """Why the database at ``db_path`` is damaged, or None if it passes SQLite's ``quick_check``.

    Returns:
        one line naming the file and the damage, without the repair hint.

    Raises:
        MemoryStoreError: if the file cannot be checked for another reason than damage
            (permission denied, a write-ahead log unreadable on a read-only location, a lock).

    Cost: one pass over the file (about a second per GB here).
    """
    try:
        check_database_file(db_path)
        db = connect_readonly(db_path)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        except sqlite3.Error as exc:
            raise sqlite_failure(db_path, exc) from None
        finally:
            db.close()
    except MemoryDamagedError as exc:
        return exc.problem
    problems = [one_line(r[0]) for r in rows if r[0] != "ok"]
    if not problems:
        return None
    more = f"; {len(problems) - 1} more problems" if len(problems) > 1 else ""
    return f"memory database {db_path} is damaged ({problems[0]}{more})"


_EPISODE_COLUMNS = "id, uuid, game, started_at, finished_at, score, max_score, steps, model, params"
_STEP_COLUMNS = "id, episode_id, step, state_key, embedding, action, reward, ret, score, world_hash, observation, game"


def _max_id(damaged: sqlite3.Connection, table: str) -> int:
    for sql in (f"SELECT seq FROM sqlite_sequence WHERE name = '{table}'", f"SELECT MAX(id) FROM {table}"):
        try:
            row = damaged.execute(sql).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row and row[0] is not None:
            return int(row[0])
    return 0


@dataclass
class _Table:
    """The readable rows of a damaged table; ``whole`` when one scan read it all (then every
    id not in ``rows`` never existed or was deleted), else ``unreadable`` holds the ids whose
    lookup failed and ``max_id`` the largest id ever used."""

    rows: list[tuple]
    whole: bool
    unreadable: set[int]
    max_id: int


def _read_rows(damaged: sqlite3.Connection, table: str, columns: str) -> _Table:
    """All readable rows of a table: one scan, or, when the scan hits a bad page, one rowid
    lookup per id so that a bad page loses only its own rows."""
    try:
        rows = damaged.execute(f"SELECT {columns} FROM {table} ORDER BY id").fetchall()
        return _Table(rows, True, set(), max((r[0] for r in rows), default=0))
    except sqlite3.DatabaseError:
        pass
    rows, unreadable = [], set()
    max_id = _max_id(damaged, table)
    for row_id in range(1, max_id + 1):
        try:
            row = damaged.execute(f"SELECT {columns} FROM {table} WHERE id = ?", (row_id,)).fetchone()
        except sqlite3.DatabaseError:
            unreadable.add(row_id)
            continue
        if row is not None:
            rows.append(row)
    return _Table(rows, False, unreadable, max_id)


def _steps_by_episode(steps: _Table, dim: int) -> tuple[dict[int, list[tuple[int, str, StepRecord]]], set[int]]:
    """Readable steps grouped by episode id as (row id, game, step), in step order, and the ids of
    the episodes with a step that was read but is unusable (malformed embedding)."""
    out: dict[int, list[tuple[int, str, StepRecord]]] = {}
    bad: set[int] = set()
    for r in steps.rows:
        vector = np.frombuffer(r[4], dtype=np.float32) if isinstance(r[4], bytes) else np.empty(0, np.float32)
        if vector.shape != (dim,):
            bad.add(r[1])
            out.setdefault(r[1], [])
            continue
        out.setdefault(r[1], []).append((r[0], r[11], StepRecord(
            step=r[2], state_key=r[3], embedding=vector, action=r[5], reward=r[6], ret=r[7], score=r[8],
            world_hash=r[9], observation=r[10])))
    for rows in out.values():
        rows.sort(key=lambda x: x[2].step)
    return out, bad


def _whole(steps: list[tuple[int, str, StepRecord]], n: int | None) -> bool:
    """Whether these readable steps are a whole episode of ``n`` steps (0 … n−1 each once; ``n`` None:
    as many as there are)."""
    numbers = [s.step for _, _, s in steps]
    if n is None:  # an episode known only from its steps: at least one
        return bool(steps) and numbers == list(range(len(steps)))
    return numbers == list(range(n))


def _ends_here(table: _Table, by_id: dict[int, int], episode_id: int, last_id: int) -> bool:
    """Whether an episode without a readable row certainly has no step after row ``last_id``.

    An episode's steps are inserted in one transaction under the writer lock, so their row
    ids are consecutive; the episode ended at ``last_id`` if the next id was never used, is
    another episode's readable row, or was cleanly absent (pruned rows go whole episodes at a time).
    """
    nxt = last_id + 1
    if table.whole or nxt > table.max_id:
        return True
    if nxt in table.unreadable:
        return False
    return by_id.get(nxt, -1) != episode_id


def _rebuilt_episode(episode_id: int, steps: list[tuple[int, str, StepRecord]], stamp: str,
                     damaged_name: str) -> EpisodeRecord | None:
    """An episode record rebuilt from its whole steps, or None if they are not one episode's."""
    games = {g for _, g, _ in steps}
    ids = [i for i, _, _ in steps]
    if len(games) != 1 or ids != list(range(ids[0], ids[0] + len(ids))):
        return None
    last = steps[-1][2]
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return EpisodeRecord(
        uuid=f"salvaged-{stamp}-{episode_id}", game=games.pop(),
        score=float(last.score) if last.score is not None else 0.0, steps=len(steps),
        params={"salvaged_from": damaged_name, "episode_id": episode_id}, started_at=when, finished_at=when,
    )


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


def _salvage_rows(copy: Path, dim: int, stamp: str, damaged_name: str, report: RebuildReport,
                  progress: Progress | None) -> list[tuple[EpisodeRecord, list[StepRecord]]]:
    """The whole episodes readable in ``copy``, oldest first; fills the counts of ``report``."""
    try:
        damaged = sqlite3.connect(copy)
    except sqlite3.DatabaseError:
        report.episodes_table_damaged = True
        return []
    try:
        try:
            episodes = _read_rows(damaged, "episodes", _EPISODE_COLUMNS)
        except sqlite3.DatabaseError:
            episodes = _Table([], False, set(), 0)
        try:
            steps = _read_rows(damaged, "steps", _STEP_COLUMNS)
        except sqlite3.DatabaseError:
            steps = _Table([], False, set(), 0)
    finally:
        damaged.close()
    report.episodes_table_damaged = not episodes.whole
    steps_of, bad = _steps_by_episode(steps, dim)
    step_owner = {r[0]: r[1] for r in steps.rows}
    kept: list[tuple[int, EpisodeRecord, list[StepRecord]]] = []
    rows = {r[0]: r for r in episodes.rows}
    known = sorted(set(rows) | set(steps_of))
    for i, episode_id in enumerate(known):
        of = steps_of.get(episode_id, [])
        row = rows.get(episode_id)
        if row is not None:
            if _whole(of, row[7]) and episode_id not in bad:
                kept.append((episode_id, EpisodeRecord(
                    uuid=row[1], game=row[2], started_at=row[3], finished_at=row[4], score=row[5], max_score=row[6],
                    steps=row[7], model=row[8], params=_params(row[9])), [s for _, _, s in of]))
        elif _whole(of, None) and episode_id not in bad and _ends_here(steps, step_owner, episode_id, of[-1][0]):
            record = _rebuilt_episode(episode_id, of, stamp, damaged_name)
            if record is not None:
                kept.append((episode_id, record, [s for _, _, s in of]))
                report.episodes_rebuilt += 1
        if progress is not None:
            progress("salvage", i + 1, len(known))
    report.episodes_kept = len(kept)
    report.episodes_lost = len(known) - len(kept)
    report.steps_kept = sum(len(s) for _, _, s in kept)
    report.steps_lost = len(steps.rows) - report.steps_kept
    return [(record, s) for _, record, s in kept]


def salvage_database(root: Path, embedder: Embedder, progress: Progress | None = None, *,
                     lock_timeout: float = LOCK_TIMEOUT_S) -> RebuildReport:
    """Copy every wholly readable episode of a damaged ``memory.sqlite`` into a new database.

    The damaged file (with its ``-wal``/``-shm``) is renamed to
    ``memory.sqlite.damaged-<UTC timestamp>``, never deleted. An episode is kept if its
    row and all of its ``steps`` rows can be read; an episode whose row cannot be read is
    rebuilt from its steps when they are certainly all there (step 0 … n−1 on consecutive
    rows, and the row after the last one is another episode's or was never written), with a
    ``salvaged-…`` uuid, its last step's score, and the salvage time as its dates. Episodes are
    written in their old order; losses are counted (see :class:`RebuildReport`).

    Args:
        lock_timeout: seconds to wait for another process's hold on ``memory.lock``.

    Raises:
        MemoryStoreError: if the memory directory cannot be written, or another process holds its writer lock
            past ``lock_timeout`` (nothing is renamed then).
    """
    check_writable(root)
    db_path = root / "memory.sqlite"
    report = RebuildReport(salvaged=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    damaged_path = db_path.with_name(f"{db_path.name}.damaged-{stamp}")
    with WriterLock(str(root / "memory.lock"), timeout=lock_timeout):
        for suffix in ("", "-wal", "-shm"):
            src = db_path.with_name(db_path.name + suffix)
            if src.exists():
                os.replace(src, damaged_path.with_name(damaged_path.name + suffix))
        report.damaged_file = str(damaged_path)
        with tempfile.TemporaryDirectory(dir=root, prefix="salvage-") as work:
            copy = _readable_copy(damaged_path, Path(work))
            kept = _salvage_rows(copy, int(embedder.dim), stamp, damaged_path.name, report, progress)
    store = MemoryStore(root, embedder)
    try:
        store.write_episodes(kept, update_index=False)
    finally:
        store.close()
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
        MemoryStoreError: if there is no memory at ``root`` (or ``root`` is a file), it is not
            writable (read-only file system, permission), cannot be read, or belongs to another
            embedder.
    """
    db_path = root / "memory.sqlite"
    if not check_memory_root(root):
        raise MemoryStoreError(f"no memory at {root} (no {db_path.name})")
    check_writable(root)
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
