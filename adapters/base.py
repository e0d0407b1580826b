"""The environment interface the agent loop relies on."""

from __future__ import annotations

from typing import Any, Protocol


class AdapterError(Exception):
    """An environment cannot be created or used (missing/unsupported game, missing parser model).

    The message is one line, meant for the user.
    """


class Environment(Protocol):
    """Gymnasium-style environment with text observations and a finite candidate-action set.

    ``info`` (from reset and step) carries at least: ``score`` (float), ``max_score``
    (float | None), ``location`` (str | None), ``inventory`` (list[str]),
    ``candidates`` (list[str], empty when the episode is over) and ``state_hash``
    (str | None, an exact-match key of the world state). An adapter may also give
    ``state_key`` (str), the text the memory embeds for this state; without it the
    agent builds one from location, inventory, score and observation.
    """

    name: str

    def reset(self) -> tuple[str, dict[str, Any]]:
        """Start an episode: (observation, info)."""
        ...

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Apply an action: (observation, reward, terminated, truncated, info)."""
        ...

    def close(self) -> None:
        """Free the environment's resources (subprocesses, emulator)."""
        ...
