"""The text-game state key: what makes two game states "the same" for retrieval.

A compact text built from the location name, the inventory, the score and the
observation (cleaned of score/move lines), e.g.::

    location: west of house | inventory: leaflet | score: 0 | you are standing in an open field ...

:class:`adapters.jericho_env.JerichoEnv` gives it as ``info["state_key"]``; the web adapters build
their own (:func:`adapters.web_observation.state_key`). The agent embeds whatever the adapter gives.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_SCORE_LINES = [
    re.compile(r"\[?your score has (just )?(gone|went) (up|down) by [a-z0-9\- ]+ points?\.?\]?", re.I),
    re.compile(r"score:\s*-?\d+\s*(moves|turns):\s*\d+", re.I),
    re.compile(r"\b(score|moves|turns)\s*:\s*-?\d+", re.I),
]
_SPACES = re.compile(r"\s+")


def clean_observation(observation: str) -> str:
    """Lower-case observation text without score/move status lines, single-spaced."""
    text = observation
    for pattern in _SCORE_LINES:
        text = pattern.sub(" ", text)
    return _SPACES.sub(" ", text).strip().lower()


def build_state_key(
    location: str | None, inventory: Sequence[str], score: float | int | None, observation: str
) -> str:
    """The state key text (one line) for a game state.

    Args:
        location: the player's location name (None when unknown).
        inventory: names of the objects carried.
        score: the current game score (None when unknown).
        observation: the raw observation text of this step.

    Returns:
        ``"location: … | inventory: … | score: … | <cleaned observation>"``.
    """
    sc = "?" if score is None else str(int(score)) if float(score).is_integer() else str(score)
    return f"{situation_key(location, inventory)}score: {sc} | {clean_observation(observation)}"


def situation_key(location: str | None, inventory: Sequence[str]) -> str:
    """The situation of a game state: where the player is and what it carries, the first fields of its state key
    (:func:`build_state_key` starts with it), e.g. ``"location: foot bridge | inventory: nothing | "``.

    Whatever else differs (objects elsewhere, the score, the time), an action that killed in one state of a
    situation is likely to kill in the others: `--avoid-deaths` (:func:`jitrl_cli.core.retrieval.situation_deaths`).
    """
    loc = (location or "unknown").strip().lower()
    inv = ", ".join(sorted(i.strip().lower() for i in inventory)) or "nothing"
    return f"location: {loc} | inventory: {inv} | "


_SITUATION = re.compile(r"location: [^|]* \| inventory: [^|]* \| ")


def situation_of(state_key: str) -> str | None:
    """The situation (:func:`situation_key`) a state key starts with; None for a key of another form (a web page's)."""
    found = _SITUATION.match(state_key)
    return found.group(0) if found else None
