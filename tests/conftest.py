"""Shared fixtures: the real games in ../shared/games, the real default model, temp memories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_GAMES = ROOT.parent / "shared" / "games"

# Tests use the shared story files and never download anything.
os.environ.setdefault("JITRL_GAMES_DIR", str(SHARED_GAMES))


@pytest.fixture(scope="session")
def games_dir() -> Path:
    path = Path(os.environ["JITRL_GAMES_DIR"])
    assert (path / "zork1.z5").is_file(), f"zork1.z5 not found in {path}"
    return path


@pytest.fixture(scope="session")
def zork1(games_dir: Path) -> Path:
    return games_dir / "zork1.z5"


@pytest.fixture(scope="session")
def model_path() -> Path:
    from jitrl_cli.llm.model import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def llm(model_path):
    from jitrl_cli.llm.model import LlamaModel

    model = LlamaModel(model_path, n_ctx=2048)
    yield model
    model.close()


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `jitrl` console entry point in a subprocess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "jitrl_cli", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, stdin=subprocess.DEVNULL,
    )
