"""Portable memory files: export a memory's episodes and steps to JSON Lines, import them back.

Format (UTF-8 JSON Lines, gzip-compressed when the file name ends in ``.gz``)::

    {"format": "jitrl-memory", "version": 1, "schema_version": 1, "embedder": "hash-ngram-v1",
     "dim": 256, "exported_at": "...", "episodes": N, "steps": M}
    {"episode": {"uuid": ..., "game": ..., "score": ..., ...}, "steps": [{"step": 0, "state_key": ...,
     "action": ..., "reward": ..., "ret": ..., "score": ..., "world_hash": ..., "observation": ...,
     "embedding": "<base64 of dim little-endian float32>"}, ...]}
    ...

One line per episode keeps an episode whole. Import validates the entire file
before writing anything (a file holding fewer episodes or steps than its header says
was cut short: it is refused unless the caller accepts a partial import), writes every new episode in one transaction (episodes
whose uuid is already stored are skipped, so importing twice does not duplicate),
then rebuilds the touched indexes.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import numpy as np

from memories.files import MemoryStoreError
from memories.store import SCHEMA_VERSION, EpisodeRecord, MemoryStore, StepRecord

FORMAT = "jitrl-memory"
FORMAT_VERSION = 1
_EPISODE_FIELDS = ("uuid", "game", "started_at", "finished_at", "score", "max_score", "steps", "model", "params")
_STEP_FIELDS = ("step", "state_key", "action", "reward", "ret", "score", "world_hash", "observation")


@dataclass
class ImportReport:
    """What :func:`import_memory` did: episodes read, new, already present; steps added; games touched;
    ``short_by``: how a file imported with ``partial=True`` fell short of its header (empty if it did not)."""

    episodes_read: int = 0
    episodes_added: int = 0
    episodes_present: int = 0
    steps_added: int = 0
    games: tuple[str, ...] = ()
    short_by: str = ""


def _shortfall(header: dict, episodes: list[tuple[EpisodeRecord, list[StepRecord]]]) -> str:
    """How the episodes read disagree with the header's counts ("" if they agree or it has none)."""
    n_steps = sum(len(s) for _, s in episodes)
    said_episodes, said_steps = header.get("episodes"), header.get("steps")
    if (isinstance(said_episodes, int) and said_episodes != len(episodes)) or (
            isinstance(said_steps, int) and said_steps != n_steps):
        return f"its header says {said_episodes} episodes and {said_steps} steps, it holds {len(episodes)} and {n_steps}"
    return ""


@contextmanager
def _open(path: Path, mode: str, gz: bool) -> Iterator[IO[str]]:
    opener = gzip.open if gz else open
    with opener(path, mode + "t", encoding="utf-8") as fh:  # type: ignore[operator]
        yield fh


def export_memory(store: MemoryStore, path: Path, game: str | None = None,
                  progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """Write the memory's episodes (of one game, or all) to ``path``.

    The file is written to ``path.tmp`` first and renamed, so a failed export
    leaves no partial file.

    Returns:
        (episodes, steps) written.

    Raises:
        MemoryStoreError: if ``path`` cannot be written.
    """
    where, args = ("WHERE game = ?", (game,)) if game else ("", ())
    episodes = store.read(f"SELECT id, {', '.join(_EPISODE_FIELDS)} FROM episodes {where} ORDER BY id", args)
    n_steps = store.read(f"SELECT COUNT(*) FROM steps {where}", args)[0][0]
    tmp = path.with_name(path.name + ".tmp")
    written = 0
    try:
        with _open(tmp, "w", gz=path.name.endswith(".gz")) as fh:
            header = {
                "format": FORMAT, "version": FORMAT_VERSION, "schema_version": SCHEMA_VERSION,
                "embedder": store.embedder.name, "dim": store.dim,
                "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "episodes": len(episodes), "steps": n_steps,
            }
            fh.write(json.dumps(header) + "\n")
            for i, row in enumerate(episodes):
                episode = dict(zip(_EPISODE_FIELDS, row[1:]))
                episode["params"] = json.loads(episode["params"] or "{}")
                steps = store.read(
                    f"SELECT {', '.join(_STEP_FIELDS)}, embedding FROM steps WHERE episode_id = ? ORDER BY step", (row[0],)
                )
                fh.write(json.dumps({"episode": episode, "steps": [
                    {**dict(zip(_STEP_FIELDS, s[:-1])), "embedding": base64.b64encode(s[-1]).decode("ascii")} for s in steps
                ]}) + "\n")
                written += len(steps)
                if progress is not None:
                    progress(i + 1, len(episodes))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MemoryStoreError(f"cannot write {path}: {exc.strerror or exc}") from None
    return len(episodes), written


def read_export(path: Path, dim: int, embedder: str, partial: bool = False) -> list[tuple[EpisodeRecord, list[StepRecord]]]:
    """Parse and validate a whole export file for a memory of embedder ``embedder`` / dimension ``dim``.

    Args:
        partial: accept a file whose episode or step count differs from its header's (a file cut
            short at a line boundary).

    Raises:
        MemoryStoreError: one line naming the file (and line) for an unreadable file,
            another format or version, another embedder or dimension, a malformed episode,
            or (unless ``partial``) fewer or more episodes or steps than the header says.
    """
    return _read_export(path, dim, embedder, partial)[1]


def _read_export(path: Path, dim: int, embedder: str,
                 partial: bool) -> tuple[dict, list[tuple[EpisodeRecord, list[StepRecord]]]]:
    out: list[tuple[EpisodeRecord, list[StepRecord]]] = []
    try:
        with _open(path, "r", gz=path.name.endswith(".gz")) as fh:
            first = fh.readline()
            try:
                header = json.loads(first)
            except ValueError:
                header = None
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise MemoryStoreError(f"{path} is not a jitrl memory export (no '{FORMAT}' header line)")
            if header.get("version") != FORMAT_VERSION:
                raise MemoryStoreError(f"{path} is export format version {header.get('version')}; this jitrl reads {FORMAT_VERSION}")
            if header.get("embedder") != embedder or header.get("dim") != dim:
                raise MemoryStoreError(
                    f"{path} was exported with embedder {header.get('embedder')} (dim {header.get('dim')});"
                    f" this memory uses {embedder} (dim {dim})"
                )
            for lineno, line in enumerate(fh, start=2):
                if line.strip():
                    out.append(_parse_episode(line, dim, f"{path} line {lineno}"))
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # gzip.BadGzipFile is an OSError
        raise MemoryStoreError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    short = _shortfall(header, out)
    if short and not partial:
        raise MemoryStoreError(
            f"{path} is incomplete ({short}); nothing was imported; pass --partial to import the whole episodes it holds"
        )
    return header, out


def _parse_episode(line: str, dim: int, where: str) -> tuple[EpisodeRecord, list[StepRecord]]:
    try:
        obj = json.loads(line)
        ep = obj["episode"]
        steps = []
        for s in obj["steps"]:
            vector = np.frombuffer(base64.b64decode(s["embedding"], validate=True), dtype="<f4").astype(np.float32)
            if vector.shape != (dim,):
                raise MemoryStoreError(f"{where}: an embedding has {vector.size} values, expected {dim}")
            steps.append(StepRecord(step=int(s["step"]), state_key=str(s["state_key"]), embedding=vector,
                                    action=str(s["action"]), reward=float(s["reward"]), ret=float(s["ret"]),
                                    score=s.get("score"), world_hash=s.get("world_hash"), observation=s.get("observation")))
        record = EpisodeRecord(uuid=str(ep["uuid"]), game=str(ep["game"]), score=float(ep["score"]), steps=int(ep["steps"]),
                               max_score=ep.get("max_score"), model=ep.get("model"), params=dict(ep.get("params") or {}),
                               started_at=str(ep.get("started_at") or ""), finished_at=str(ep.get("finished_at") or ""))
    except MemoryStoreError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise MemoryStoreError(f"{where}: malformed episode ({type(exc).__name__}: {exc})") from None
    if record.steps != len(steps):
        raise MemoryStoreError(f"{where}: episode {record.uuid} says {record.steps} steps but holds {len(steps)}")
    return record, steps


def import_memory(store: MemoryStore, path: Path, progress: Callable[[str, int, int], None] | None = None,
                  partial: bool = False) -> ImportReport:
    """Import an export file into ``store``: all new episodes in one transaction, then rebuild their indexes.

    Args:
        partial: import the whole episodes of a file cut short (see :func:`read_export`); the
            report's ``short_by`` then says by how much.

    Raises:
        MemoryStoreError: see :func:`read_export`; nothing is written on any error.
    """
    header, episodes = _read_export(path, store.dim, store.embedder.name, partial)
    present = {r[0] for r in store.read("SELECT uuid FROM episodes")}
    new = [(e, s) for e, s in episodes if e.uuid not in present]
    new = list({e.uuid: (e, s) for e, s in new}.values())  # a file may repeat an episode
    report = ImportReport(episodes_read=len(episodes), episodes_added=len(new),
                          episodes_present=len(episodes) - len(new), steps_added=sum(len(s) for _, s in new),
                          short_by=_shortfall(header, episodes))
    if new:
        store.write_episodes(new, update_index=False)
        report.games = tuple(dict.fromkeys(e.game for e, _ in new))
        for game in report.games:
            store.rebuild_index(game, (lambda d, t, g=game: progress(g, d, t)) if progress else None)
    return report
