"""Opening what a game run needs once: the story file, the Jericho environment, the model and its scorer."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from adapters.jericho_env import JerichoEnv, check_story_file
from jitrl_cli.agent import Agent, AgentConfig
from jitrl_cli.llm import LlamaModel
from jitrl_cli.paths import find_game, require_game, user_games_dir
from jitrl_cli.scoring import CandidateScorer
from memories.embedding import Embedder
from memories.store import MemoryStore


def resolve_game(game: str, rom_dir: Path | None, offer_download: bool) -> Path:
    """The story file of ``game`` (a name or a path), offering to download the suite when interactive.

    Raises:
        UserError: if no such game is found; AdapterError: if the file is not a supported story file.
    """
    rom = find_game(game, rom_dir)
    if rom is None:
        if offer_download and sys.stdin.isatty() and "/" not in game and not Path(game).suffix:
            if typer.confirm(f"{game} not found. Download the Jericho game suite into {user_games_dir()}?"):
                from jitrl_cli.games import download_suite

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
    """Load the model (a path from :func:`jitrl_cli.llm.resolve_model_path`) and start the game.

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
