"""What each game of the development suite says to the player's usual requests for instructions.

Issue 22 lists "a prompt that gives the model the game's own instructions" among the levers. This survey asks
each game, from its first state, for ``help``, ``about``, ``info``, ``instructions`` and ``hint`` (each from the
same saved state, so one request does not change the next) and sorts the answers:

    none   the game does not know the word (or finds no verb in it)
    menu   a menu that waits for single key presses (N = next, RETURN = read ...), which a line-based
           Jericho step cannot page through
    text   plain text

Usage::

    python bench/game_help.py [--games zork1,zork2,...] [--json]

The games are looked up as ``jitrl play`` does (``$JITRL_GAMES_DIR``, then the usual places). Prints one row per
game: the kind of each request's answer and the first 100 characters of the longest plain-text answer.
"""

from __future__ import annotations

import json
import re
from typing import Annotated

import typer
from jericho import FrotzEnv

from jitrl_cli.paths import find_game

SUITE = "zork1,zork2,detective,enchanter,sorcerer,spellbrkr,inhumane,jewel,omniquest,snacktime,advent,reverb"
REQUESTS = ("help", "about", "info", "instructions", "hint")
_UNKNOWN = re.compile(r"don't know the word|not a verb I recognise|no verb in that sentence|not a trick you know", re.I)
_MENU = re.compile(r"N = next|RETURN = read|ENTER = select|Q = (resume|quit)", re.I)


def kind(answer: str) -> str:
    """``none``, ``menu`` or ``text`` for one answer (module docstring)."""
    if _MENU.search(answer):
        return "menu"
    return "none" if _UNKNOWN.search(answer) else "text"


def survey(game: str) -> dict:
    """The answers of one game: {"game", "kinds": {request: kind}, "text": the longest plain-text answer}."""
    path = find_game(game)
    if path is None:
        raise typer.BadParameter(f"no story file for {game!r} in the games directories (set JITRL_GAMES_DIR)")
    env = FrotzEnv(str(path))
    try:
        env.reset()
        start = env.get_state()
        kinds, texts = {}, []
        for request in REQUESTS:
            env.set_state(start)
            answer = " ".join(env.step(request)[0].split())
            kinds[request] = kind(answer)
            if kinds[request] == "text":
                texts.append(answer)
        return {"game": game, "kinds": kinds, "text": max(texts, key=len, default="")}
    finally:
        env.close()


def main(games: Annotated[str, typer.Option(help="Comma-separated games.")] = SUITE,
         as_json: Annotated[bool, typer.Option("--json", help="One JSON object per game.")] = False) -> None:
    """Survey the games (module docstring)."""
    for game in games.split(","):
        row = survey(game.strip())
        if as_json:
            print(json.dumps(row))
        else:
            cells = " ".join(f"{r}={k}" for r, k in row["kinds"].items())
            print(f"{row['game']:<10} {cells}  {row['text'][:100]}")


if __name__ == "__main__":
    typer.run(main)
