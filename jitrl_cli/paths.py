"""Where jitrl keeps things: memory, games and model cache (platformdirs), and finding games."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_path

from jitrl_cli.errors import UserError

GAMES_ENV = "JITRL_GAMES_DIR"
MEMORY_ENV = "JITRL_MEMORY_DIR"
STORY_SUFFIXES = (".z5", ".z8", ".z3", ".z4", ".z6", ".z7", ".z1", ".z2", ".dat")


def data_dir() -> Path:
    """The user data directory of jitrl (e.g. ~/.local/share/jitrl)."""
    return user_data_path("jitrl")


def default_memory_dir() -> Path:
    """``$JITRL_MEMORY_DIR`` or ``<data dir>/memory``."""
    env = os.environ.get(MEMORY_ENV)
    return Path(env).expanduser() if env else data_dir() / "memory"


def user_games_dir() -> Path:
    """Where ``jitrl games download`` puts games: ``<data dir>/games``."""
    return data_dir() / "games"


def game_dirs(rom_dir: Path | None = None) -> list[Path]:
    """Directories searched for games, in order: --rom-dir, $JITRL_GAMES_DIR, the user games dir."""
    dirs: list[Path] = []
    if rom_dir is not None:
        dirs.append(Path(rom_dir).expanduser())
    env = os.environ.get(GAMES_ENV)
    if env:
        dirs.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p)
    dirs.append(user_games_dir())
    return dirs


def find_game(game: str, rom_dir: Path | None = None) -> Path | None:
    """Resolve a game name (``zork1``) or a story-file path to an existing file, else None.

    A name matches ``NAME.z5|.z8|...`` directly in a games directory or one level below
    (the downloaded suite keeps its games in a subfolder).
    """
    as_path = Path(game).expanduser()
    if as_path.suffix.lower() in STORY_SUFFIXES or os.sep in game:
        if as_path.is_file():
            return as_path
        if os.sep in game or as_path.suffix:
            return None
    for directory in game_dirs(rom_dir):
        if not directory.is_dir():
            continue
        for suffix in STORY_SUFFIXES:
            for candidate in (directory / f"{game}{suffix}", *directory.glob(f"*/{game}{suffix}")):
                if candidate.is_file():
                    return candidate
    return None


def require_game(game: str, rom_dir: Path | None = None) -> Path:
    """Like :func:`find_game` but raises a one-line :class:`UserError` when nothing is found."""
    path = find_game(game, rom_dir)
    if path is None:
        if os.sep in game or Path(game).suffix.lower() in STORY_SUFFIXES:
            raise UserError(f"story file not found: {game}")
        searched = ", ".join(str(d) for d in game_dirs(rom_dir))
        raise UserError(
            f"unknown game {game!r}: no {game}.z5/.z8/... in {searched}; run `jitrl games download` or set {GAMES_ENV}"
        )
    return path


def list_games(rom_dir: Path | None = None) -> list[Path]:
    """All story files found in the games directories (first occurrence of each name)."""
    seen: dict[str, Path] = {}
    for directory in game_dirs(rom_dir):
        if not directory.is_dir():
            continue
        for path in sorted(directory.rglob("*")):
            if path.suffix.lower() in STORY_SUFFIXES and path.is_file():
                seen.setdefault(path.stem, path)
    return [seen[k] for k in sorted(seen)]
