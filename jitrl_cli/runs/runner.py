"""The episode runner: the one loop that plays episodes for `jitrl play`, `jitrl web` and both evals.

A :class:`Target` is what episodes are played on: an environment, its memory namespace, a name to show,
the fields its episodes add to their JSON object (``jitrl web --json``, the eval logs) and an optional
hook run before each episode (e.g. choosing a MiniWoB problem instance). :func:`run_episodes` plays a
sequence of episodes of one agent on one target and yields an :class:`Episode` for each; the agent's
step and episode-end events go to the observer (the live view, the step logger). Showing the episodes
(live view, ``--json`` rows, plain lines) is the command layer's job; the evals record them in their
JSONL logs (:func:`jitrl_cli.runs.evaluation.run_eval`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from jitrl_cli.core.agent import Agent, EpisodeResult, Observer


@dataclass
class Target:
    """An environment to play episodes on.

    Attributes:
        env: the environment (reset by the agent at every episode).
        namespace: the memory namespace (the game's name, ``miniwob``, ``webarena/<site>``).
        name: what the views call it (the game's title, ``miniwob/click-button``).
        fields: extra fields ``(result) -> dict`` of an episode's JSON object.
        before_episode: called as ``(episode)`` (1-based) just before an episode is played.
        owns_env: :meth:`close` closes the environment (False: the session or the caller does).
        task: the web task's name (``click-button``, ``webarena-42``); None for a game.
    """

    env: Any
    namespace: str
    name: str
    fields: Callable[[EpisodeResult], dict[str, Any]] | None = None
    before_episode: Callable[[int], None] | None = None
    owns_env: bool = False
    task: str | None = None

    def record(self, result: EpisodeResult) -> dict[str, Any]:
        """The episode's JSON object: ``result.to_json()`` with this target's fields."""
        return result.to_json() | (self.fields(result) if self.fields is not None else {})

    def close(self) -> None:
        """Close the environment when this target owns it."""
        if self.owns_env:
            self.env.close()


@dataclass
class Episode:
    """One finished episode: its number, the agent's result and its JSON object (:meth:`Target.record`)."""

    target: Target
    number: int
    result: EpisodeResult
    record: dict[str, Any]


def play_episode(agent: Agent, target: Target, number: int, header: str, observer: Observer | None = None) -> Episode:
    """Play episode ``number`` (1-based) of ``agent`` on ``target``, after its ``before_episode`` hook."""
    if target.before_episode is not None:
        target.before_episode(number)
    result = agent.run_episode(target.env, target.namespace, number, header, observer)
    return Episode(target, number, result, target.record(result))


def run_episodes(agent: Agent, target: Target, header: str, numbers: Iterable[int],
                 observer: Observer | None = None) -> Iterator[Episode]:
    """Play the episodes ``numbers`` (e.g. ``range(1, n + 1)``) one after another, yielding each as it ends."""
    for number in numbers:
        yield play_episode(agent, target, number, header, observer)
