"""Shared fixtures: the real games in ../shared/games, the real default model, temp memories."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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


def start_until_logged(args: list[str], log: Path, timeout: float = 300) -> subprocess.Popen:
    """Start the real `jitrl ARGS` in a session of its own and return it, still running, as soon as ``log`` holds one
    complete line (an episode logged, the next one under way), or after ``timeout`` seconds.

    Raises:
        AssertionError: the process exited before logging (its stderr is the message).
    """
    proc = subprocess.Popen([sys.executable, "-m", "jitrl_cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not (log.exists() and log.read_bytes().endswith(b"\n")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.005)
    return proc


def kill_when_logged(args: list[str], log: Path, timeout: float = 300) -> None:
    """Start the real `jitrl ARGS` and SIGKILL its whole process group as soon as ``log`` holds one complete line
    (:func:`start_until_logged`): an eval interrupted at the worst moment.

    Raises:
        AssertionError: the process exited before logging (its stderr is the message).
    """
    proc = start_until_logged(args, log, timeout)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def child_pids(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    kids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            kids.append(int(status.parent.name))
    return kids
