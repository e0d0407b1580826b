"""Sessions: what a run opens once, the environment(s) and the model that scores their candidate actions.

:class:`Session` holds the model and its scorer, hands out agents (``.agent(embedder, store, config)``)
and closes them; :class:`GameSession` (a Jericho game) and :class:`WebSession` (a headless Chromium for
MiniWoB++/WebArena tasks) add their environments, which they offer as targets (:class:`jitrl_cli.runs.runner.Target`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.browser import Browser
from adapters.jericho_env import JerichoEnv, check_story_file
from adapters.miniwob_env import NAMESPACE as MINIWOB_NAMESPACE
from adapters.miniwob_env import MiniWoBEnv, supported_tasks, task_path
from jitrl_cli.core.agent import Agent, EpisodeResult
from jitrl_cli.core.config import AgentConfig
from jitrl_cli.llm.backend import Backend, Model, Scorer
from jitrl_cli.paths import find_game, require_game, user_games_dir
from jitrl_cli.runs.games import download_suite
from jitrl_cli.runs.runner import Target
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
                download_suite(user_games_dir())
        rom = require_game(game, rom_dir)
    check_story_file(rom)
    return rom


class Session:
    """The model (``llm``) and the scorer of its candidate actions, with the prompt ``header`` of the run.

    The base of :class:`GameSession` and :class:`WebSession`, which are dataclasses holding these attributes.
    """

    llm: Model
    scorer: Scorer
    header: str

    def agent(self, embedder: Embedder, store: MemoryStore | None, config: AgentConfig) -> Agent:
        """A JitRL agent scoring with this session's model (``store=None``: no memory)."""
        return Agent(self.scorer, self.llm.tokenize, embedder, store, config, self.llm.name, self.llm.n_ctx)

    def close(self) -> None:
        """Close the scorer and the model (in that order)."""
        self.scorer.close()
        self.llm.close()


@dataclass
class GameSession(Session):
    """An open game environment with the model that scores its candidate actions."""

    env: JerichoEnv
    llm: Model
    scorer: Scorer
    title: str
    header: str

    def target(self) -> Target:
        """The game as a :class:`~jitrl_cli.runs.runner.Target` (its namespace is the game's name; the session closes it)."""
        return Target(self.env, self.env.name, self.title)

    def close(self) -> None:
        """Close the environment, the scorer and the model (in that order)."""
        self.env.close()
        super().close()


def open_game_session(rom: Path, backend: Backend, max_steps: int, valid_actions_timeout: float,
                      state_hash: str = "jericho") -> GameSession:
    """Load the model (or connect to the server) of ``backend`` and start the game.

    ``state_hash`` is the environment's world-state key (:class:`adapters.jericho_env.StateHash`).

    Raises:
        UserError / AdapterError: one-line errors for a bad model file, server or story file.
    """
    llm, scorer = backend.open()
    try:
        env = JerichoEnv(rom, max_steps=max_steps, valid_actions_timeout=valid_actions_timeout, state_hash=state_hash)
    except BaseException:
        scorer.close()
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
    """MiniWoB task names, stripped, blanks and repeats dropped, each checked against the task list (``["all"]``:
    every supported task, :func:`adapters.miniwob_env.supported_tasks`).

    Returns:
        the names in their first-seen order (``[]`` when none is given).

    Raises:
        AdapterError: one line naming the first unknown task and some similar ones.
    """
    names = list(dict.fromkeys(t.strip() for t in names if t and t.strip()))
    if names == ["all"]:
        return supported_tasks()
    for name in names:
        task_path(name)  # AdapterError for unknown tasks
    return names


@dataclass
class WebSession(Session):
    """A headless Chromium with the model that scores the candidate actions of web tasks.

    Shared by ``jitrl web`` and ``jitrl eval --suite``: one browser and one model for every
    task, environment and agent of a run. ``close()`` closes the scorer and the model, and the
    browser when the session started it.
    """

    browser: Browser
    llm: Model
    scorer: Scorer
    header: str = WEB_HEADER
    own_browser: bool = True

    def miniwob_env(self, task: str, max_steps: int, seed: int = 0, instances: int = 0) -> MiniWoBEnv:
        """A :class:`adapters.miniwob_env.MiniWoBEnv` for ``task`` in this session's browser (close it after use)."""
        return MiniWoBEnv(task, self.browser, max_steps=max_steps, seed=seed, instances=instances)

    def miniwob_target(self, task: str, max_steps: int, seed: int = 0, instances: int = 0) -> Target:
        """A MiniWoB ``task`` in this session's browser as a :class:`~jitrl_cli.runs.runner.Target` that owns (and
        closes) its environment; its episodes carry :func:`episode_fields` (suite ``miniwob``)."""
        env = self.miniwob_env(task, max_steps, seed, instances)
        return Target(env, MINIWOB_NAMESPACE, f"miniwob/{task}", owns_env=True, task=task,
                      fields=lambda result: episode_fields(task, "miniwob", result, env))

    def close(self) -> None:
        """Close the scorer, the model and (when owned) the browser."""
        try:
            super().close()
        finally:
            if self.own_browser:
                self.browser.close()


def start_browser(chromium: Path | None) -> Browser:
    """Start headless Chromium (``--chromium``, else $JITRL_CHROMIUM, Playwright's, /usr/bin/chromium).

    Raises:
        AdapterError: one line (``apt-get install chromium``) when no browser is found or it fails to start.
    """
    return Browser(str(chromium) if chromium else None)


def open_web_session(backend: Backend, browser: Browser, own_browser: bool = True) -> WebSession:
    """Load the model (or connect to the server) of ``backend`` and its scorer, for ``browser``.

    On failure the model is closed, and the browser too when ``own_browser``.

    Raises:
        UserError: a bad model file (one line).
    """
    try:
        llm, scorer = backend.open()
    except BaseException:
        if own_browser:
            browser.close()
        raise
    return WebSession(browser, llm, scorer, WEB_HEADER, own_browser)


def webarena_target(env: Any, name: str) -> Target:
    """A WebArena environment (:class:`adapters.webarena_env.WebArenaEnv`, closed by its caller) as a
    :class:`~jitrl_cli.runs.runner.Target`: its episodes carry :func:`episode_fields` (suite ``webarena``),
    the episode's output directory ``out_dir`` and the evaluator's ``eval_status``."""

    def fields(result: EpisodeResult) -> dict[str, Any]:
        return episode_fields(name, "webarena", result, env) | {
            "out_dir": str(env.ep_dir), "eval_status": str(getattr(env.result, "status", ""))}

    return Target(env, env.namespace, f"webarena/{name}", fields=fields, task=name)


def episode_fields(task: str, suite: str, result: EpisodeResult, env: Any) -> dict[str, Any]:
    """The web fields added to an episode's JSON object (``jitrl web --json`` and the eval logs).

    ``success`` is the episode's ``victory`` (MiniWoB: raw reward > 0), ``blocked_requests`` counts
    the requests the origin allow-list aborted so far in this environment.
    """
    return {"task": task, "suite": suite, "success": bool(result.victory), "goal": env.goal,
            "blocked_requests": len(env.guard.blocked)}
