"""The memory directory's files kept safe: one-line errors, the writer lock, access checks, read-only connections.

Everything here is about the files of a memory directory (``memory.sqlite`` and its ``-wal``/``-shm``, ``index/``,
``memory.lock``), not their contents: why one cannot be read or written (permission, read-only file system, a lock held
too long, a full disk, damage), said in one line that names the file and, where it helps, the command that repairs it
(``jitrl memory rebuild``). :mod:`memories.store` reads and writes the rows and the index through these checks;
:mod:`memories.repair` salvages what they call damaged.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path

from filelock import FileLock, Timeout

REBUILD_HINT = "run `jitrl memory rebuild`"
SQLITE_MAGIC = b"SQLite format 3\x00"
LOCK_TIMEOUT_S = 300.0  # how long a writer waits for another process's hold on memory.lock (seconds)


class MemoryStoreError(Exception):
    """The memory cannot be opened or used as asked (corrupt file, other embedder, bad id, no access).

    The message is one line; it names the file and, where it helps, the command that repairs it.
    """


class WriterLock(FileLock):
    """The memory's writer lock (filelock): a wait past its timeout is a one-line :class:`MemoryStoreError`."""

    def acquire(self, *args, **kwargs):  # noqa: ANN002, ANN003 - filelock's signature
        try:
            return super().acquire(*args, **kwargs)
        except Timeout:
            raise MemoryStoreError(
                f"another jitrl process has held {self.lock_file} for {self.timeout:g} s; "
                "wait for it to finish, or stop it"
            ) from None


class MemoryDamagedError(MemoryStoreError):
    """The memory database itself is damaged (not SQLite, truncated, malformed pages).

    Only this error means `jitrl memory rebuild` should salvage the database; a file that
    cannot be opened for lack of permission, a read-only location or a lock raises a plain
    :class:`MemoryStoreError` instead.

    Attributes:
        problem: what is wrong, one line, without the repair hint (the message adds it).
    """

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"{problem}; {REBUILD_HINT} to salvage it")


class IndexDamagedError(MemoryStoreError):
    """An index file cannot be loaded (garbage, truncated, empty); it is derived data that
    `jitrl memory rebuild` rebuilds from the rows."""


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def access_problem(path: Path, write: bool = False) -> str | None:
    """Why this process cannot read (or, with ``write``, write) ``path``, or None if it can.

    Returns:
        ``"read-only file system"`` or ``"permission denied"`` (a path below a directory
        that cannot be entered counts as permission denied).
    """
    mode = os.W_OK if write else os.R_OK
    try:
        if path.is_dir():
            mode |= os.X_OK
    except OSError:
        pass
    if os.access(path, mode):
        return None
    if write:
        try:
            if os.statvfs(path).f_flag & os.ST_RDONLY:
                return "read-only file system"
        except OSError:
            pass
    return "permission denied"


def path_exists(path: Path) -> bool:
    """Whether ``path`` exists; False where it cannot be looked up (a parent directory that cannot be entered)."""
    try:
        return path.exists()
    except OSError:  # e.g. a parent directory that cannot be entered
        return False


def check_memory_root(root: Path) -> bool:
    """Whether ``root`` holds a memory database (``memory.sqlite``); checks that ``root`` can be one.

    Raises:
        MemoryStoreError: if ``root`` is a file (not a directory), or cannot be looked into
            for lack of permission.
    """
    try:
        if root.exists() and not root.is_dir():
            hint = f"; give its directory {root.parent}" if root.name == "memory.sqlite" else ""
            raise MemoryStoreError(f"memory {root} is a file, not a memory directory{hint}")
        return (root / "memory.sqlite").exists()
    except PermissionError:
        raise MemoryStoreError(f"cannot read memory {root}: permission denied") from None


def check_writable(root: Path) -> None:
    """Make sure the memory directory ``root`` (with its database and index files) can be written.

    Raises:
        MemoryStoreError: one line saying the memory is not writable and why
            (read-only file system, permission denied).
    """
    paths = [root, root / "index", root / "memory.sqlite", root / "memory.sqlite-wal", root / "memory.sqlite-shm",
             root / "memory.lock"]
    for path in paths:
        if path is root or path_exists(path):
            problem = access_problem(path, write=True)
            if problem:
                where = "" if path == root else f" ({path.name} is not)"
                raise MemoryStoreError(
                    f"memory {root} is not writable ({problem}){where}; commands that only read it"
                    " (memory stats, list, inspect, export, check) still work"
                )


# SQLite primary result codes (https://www.sqlite.org/rescode.html)
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_AUTH, _SQLITE_NOTADB = 11, 13, 14, 23, 26


def _sqlite_code(exc: BaseException) -> int:
    code = getattr(exc, "sqlite_errorcode", None)
    return int(code) & 0xFF if code is not None else -1


def sqlite_failure(db_path: Path, exc: sqlite3.Error) -> MemoryStoreError:
    """The one-line error for a SQLite failure on the memory database ``db_path``.

    Damage (malformed pages, not a database) becomes a :class:`MemoryDamagedError` (salvaged
    by ``jitrl memory rebuild``); no access (permission, read-only file system), a lock held
    too long and a full disk say so, and never call the database damaged.
    """
    code, text = _sqlite_code(exc), one_line(exc)
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or (code == -1 and not isinstance(exc, sqlite3.OperationalError)
                                                     and isinstance(exc, sqlite3.DatabaseError)):
        return MemoryDamagedError(f"memory database {db_path} is damaged ({text})")
    if code in (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_AUTH):
        problem = access_problem(db_path.parent, write=code == _SQLITE_READONLY) or access_problem(db_path)
        if problem:
            return MemoryStoreError(f"cannot open memory database {db_path}: {problem} ({text})")
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return MemoryStoreError(f"memory database {db_path} is locked by another process ({text}); try again")
    if code == _SQLITE_FULL:
        return MemoryStoreError(f"memory database {db_path}: the disk is full ({text})")
    return MemoryStoreError(f"memory database {db_path}: {text}")


def connect_readonly(db_path: Path, timeout: float = 60) -> sqlite3.Connection:
    """Open the memory database ``db_path`` so that nothing can change it.

    Where this process may write the memory directory and file, this is an ordinary
    connection with ``PRAGMA query_only`` (SQLite refuses every change; a WAL reader must
    share the ``-shm`` file with writers, and the last connection to close tidies the
    ``-wal``/``-shm`` files away as always). Elsewhere (a read-only file system, another
    user's memory) the file is opened read-only (``mode=ro``), and, when SQLite cannot
    create the ``-shm`` file there and no ``-wal`` holds changes, as immutable: nobody can be
    writing a database that nobody can write.

    Raises:
        MemoryStoreError: for a file that cannot be read (permission), a write-ahead log that
            cannot be read on a read-only location, or a lock; :class:`MemoryDamagedError`
            for a damaged file.
    """
    try:
        if not access_problem(db_path.parent, write=True) and not access_problem(db_path, write=True):
            db = sqlite3.connect(db_path, timeout=timeout, isolation_level=None)
            db.execute("PRAGMA query_only=ON")
            return db
        uri = db_path.absolute().as_uri()
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            if _sqlite_code(exc) not in (_SQLITE_CANTOPEN, _SQLITE_READONLY) or access_problem(db_path):
                raise  # SQLite could not set up the -shm file: only these two codes, for a readable file
        wal = db_path.with_name(db_path.name + "-wal")
        if path_exists(wal) and wal.stat().st_size > 0:
            raise MemoryStoreError(
                f"memory database {db_path} has changes in {wal.name} that cannot be read where the memory is not"
                f" writable ({access_problem(db_path.parent, write=True)}); open the memory once where it is writable"
            )
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise sqlite_failure(db_path, exc) from None


def check_database_file(path: Path) -> None:
    """Cheap structural check of a SQLite file before it is opened.

    Catches what SQLite itself would open silently: a file that is not a SQLite
    database, or one truncated below the page count in its header (checked only when
    no write-ahead log holds newer pages). A missing or empty file is a new memory.

    Raises:
        MemoryDamagedError: for such a file (the message names it and the repair command).
        MemoryStoreError: if the file cannot be read (permission denied).
    """
    try:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0:
            return
        with open(path, "rb") as fh:
            header = fh.read(100)
        wal = path.with_name(path.name + "-wal")
        wal_empty = not wal.exists() or wal.stat().st_size == 0
    except PermissionError:
        raise MemoryStoreError(f"cannot read memory database {path}: permission denied") from None
    except OSError as exc:
        raise MemoryStoreError(f"cannot read memory database {path}: {exc.strerror or one_line(exc)}") from None
    if len(header) < 100 or header[:16] != SQLITE_MAGIC:
        raise MemoryDamagedError(f"memory database {path} is not a SQLite database")
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages = struct.unpack(">I", header[28:32])[0]
    if wal_empty and pages and size < pages * page_size:
        raise MemoryDamagedError(f"memory database {path} is truncated ({size} of {pages * page_size} bytes)")
