"""Sessions: what a run opens once, the environment(s) and the model that scores their candidate actions.

:class:`GameSession` (a Jericho game) and :class:`WebSession` (a headless Chromium for MiniWoB++/WebArena
tasks) both hand out agents with ``.agent(embedder, store, config)``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.browser import Browser
from adapters.jericho_env import JerichoEnv, check_story_file
from adapters.miniwob_env import MiniWoBEnv, task_path
from jitrl_cli.core.agent import Agent
from jitrl_cli.core.config import AgentConfig
from jitrl_cli.llm.model import LlamaModel
from jitrl_cli.paths import find_game, require_game, user_games_dir
from jitrl_cli.llm.scoring import CandidateScorer
from memories.embedding import Embedder
from memories.store import MemoryStore


def resolve_game(game: str, rom_dir: Path | None, confirm_download: Callable[[str], bool] | None = None) -> Path:
    """The story file of ``game`` (a name or a path), offering to download the suite when interactive.

    ``confirm_download(question)`` asks the user (the command line passes ``typer.confirm``); None never asks.

    Raises:
        UserError: if no such game is found; AdapterError: if the file is not a supported story file.
    """
    rom = find_game(game, rom_dir)
    if rom is None:
        if confirm_download is not None and sys.stdin.isatty() and "/" not in game and not Path(game).suffix:
            if confirm_download(f"{game} not found. Download the Jericho game suite into {user_games_dir()}?"):
                from jitrl_cli.runs.games import download_suite

                download_suite(user_games_dir())
        rom = require_game(game, rom_dir)
    check_story_file(rom)
    return rom


@dataclass
class GameSession:
    """An open game environment with the model that scores its candidate actions."""

    env: JerichoEnv
    llm: LlamaModel
    scorer: CandidateScorer
    title: str
    header: str

    def agent(self, embedder: Embedder, store: MemoryStore | None, config: AgentConfig) -> Agent:
        """A JitRL agent scoring with this session's model (``store=None``: no memory)."""
        return Agent(self.scorer, self.llm.tokenize, embedder, store, config, self.llm.name, self.llm.n_ctx)

    def close(self) -> None:
        """Close the environment, the scorer and the model (in that order)."""
        self.env.close()
        self.scorer.close()
        self.llm.close()


def open_game_session(rom: Path, model_path: Path, n_ctx: int, max_steps: int, valid_actions_timeout: float,
                      state_hash: str = "jericho") -> GameSession:
    """Load the model (a path from :func:`jitrl_cli.llm.model.resolve_model_path`) and start the game.

    ``state_hash`` is the environment's world-state key (:class:`adapters.jericho_env.StateHash`).

    Raises:
        UserError / AdapterError: one-line errors for a bad model file or story file.
    """
    llm = LlamaModel(model_path, n_ctx=n_ctx)
    try:
        scorer = CandidateScorer(llm)
        env = JerichoEnv(rom, max_steps=max_steps, valid_actions_timeout=valid_actions_timeout, state_hash=state_hash)
    except BaseException:
        llm.close()
        raise
    title = env.bindings.get("name", rom.stem)
    header = (f"The following is a transcript of an expert player of the text adventure game {title}, "
              "who explores, solves puzzles and scores points.")
    return GameSession(env, llm, scorer, title, header)


WEB_HEADER = """The following are transcripts of an expert web agent completing tasks in a web browser. Each turn shows the \
goal, the URL and the page's accessibility tree with element ids in brackets; after '>' comes the agent's next \
action, which works towards the goal. Actions: click [id], type [id] "text", select [id] "option", check [id], \
scroll down, go back, stop "answer".

goal: Enter "Paris" into the search box and press Search.
url: example/search.html
[1] text "Find a city"
[2] textbox
[3] button "Search"

> type [2] "Paris"
goal: Enter "Paris" into the search box and press Search.
url: example/search.html
[1] text "Find a city"
[2] textbox: "Paris"
[3] button "Search"

> click [3] "Search"
goal: Enter "Paris" into the search box and press Search.
url: example/search.html
episode over: reward 1

goal: Click on the "Cancel" button.
url: example/buttons.html
[1] button "Save"
[2] textbox
[3] button "Cancel"

> click [3] "Cancel"
goal: Click on the "Cancel" button.
url: example/buttons.html
episode over: reward 1

---"""
MINIWOB_MAX_STEPS = 10
WEBARENA_MAX_STEPS = 30



def miniwob_tasks(names: list[str]) -> list[str]:
    """MiniWoB task names, stripped, blanks and repeats dropped, each checked against the task list.

    Returns:
        the names in their first-seen order (``[]`` when none is given).

    Raises:
        AdapterError: one line naming the first unknown task and some similar ones.
    """
    names = list(dict.fromkeys(t.strip() for t in names if t and t.strip()))
    for name in names:
        task_path(name)  # AdapterError for unknown tasks
    return names


@dataclass
class WebSession:
    """A headless Chromium with the model that scores the candidate actions of web tasks.

    Shared by ``jitrl web`` and ``jitrl eval --suite``: one browser and one model for every
    task, environment and agent of a run. ``close()`` closes the scorer and the model, and the
    browser when the session started it.
    """

    browser: Browser
    llm: LlamaModel
    scorer: CandidateScorer
    header: str = WEB_HEADER
    own_browser: bool = True

    def agent(self, embedder: Embedder, store: MemoryStore | None, config: AgentConfig) -> Agent:
        """A JitRL agent scoring with this session's model (``store=None``: no memory)."""
        return Agent(self.scorer, self.llm.tokenize, embedder, store, config, self.llm.name, self.llm.n_ctx)

    def miniwob_env(self, task: str, max_steps: int, seed: int = 0, instances: int = 0) -> MiniWoBEnv:
        """A :class:`adapters.miniwob_env.MiniWoBEnv` for ``task`` in this session's browser (close it after use)."""
        return MiniWoBEnv(task, self.browser, max_steps=max_steps, seed=seed, instances=instances)

    def close(self) -> None:
        """Close the scorer, the model and (when owned) the browser."""
        try:
            self.scorer.close()
            self.llm.close()
        finally:
            if self.own_browser:
                self.browser.close()


def start_browser(chromium: Path | None) -> Browser:
    """Start headless Chromium (``--chromium``, else $JITRL_CHROMIUM, Playwright's, /usr/bin/chromium).

    Raises:
        AdapterError: one line (``apt-get install chromium``) when no browser is found or it fails to start.
    """
    return Browser(str(chromium) if chromium else None)


def open_web_session(model_path: Path, n_ctx: int, browser: Browser, own_browser: bool = True) -> WebSession:
    """Load the model (a path from :func:`jitrl_cli.llm.model.resolve_model_path`) and its scorer for ``browser``.

    On failure the model is closed, and the browser too when ``own_browser``.

    Raises:
        UserError: a bad model file (one line).
    """
    llm = None
    try:
        llm = LlamaModel(model_path, n_ctx=n_ctx)
        scorer = CandidateScorer(llm)
    except BaseException:
        try:
            if llm is not None:
                llm.close()
        finally:
            if own_browser:
                browser.close()
        raise
    return WebSession(browser, llm, scorer, WEB_HEADER, own_browser)


def episode_fields(task: str, suite: str, result: Any, env: Any) -> dict[str, Any]:
    """The web fields added to an episode's JSON object (``jitrl web --json`` and the eval logs).

    ``success`` is the episode's ``victory`` (MiniWoB: raw reward > 0), ``blocked_requests`` counts
    the requests the origin allow-list aborted so far in this environment.
    """
    return {"task": task, "suite": suite, "success": bool(result.victory), "goal": env.goal,
            "blocked_requests": len(env.guard.blocked)}
