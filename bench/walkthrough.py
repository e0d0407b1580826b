"""How many points a known route scores within N steps: what an expert reaches, beside `jitrl eval`'s goals.

Plays Jericho's walkthrough for the game (the action list the Jericho authors recorded to win it),
or with ``--route FILE`` an action list of one's own, with the emulator seed of Jericho's bindings,
exactly as `jitrl play` starts a game, and reports the score after each of ``--steps`` (default
10, 20, …, 60) and the step at which each reward arrived. The walkthrough is written for winning,
not for the most points per step: ``bench/routes/zork1-70.txt`` is a denser zork1 route (70 points
at step 38, against the walkthrough's 63 at step 60).

A route file holds one action per line; ``#`` starts a comment, blank lines are skipped.

Usage::

    python bench/walkthrough.py zork1
    python bench/walkthrough.py zork1 --route bench/routes/zork1-70.txt --steps 38,60
    python bench/walkthrough.py detective --steps 20,40,60 --json bench/results/walkthrough-detective.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.base import AdapterError  # noqa: E402
from adapters.jericho_env import JerichoEnv  # noqa: E402
from jitrl_cli.errors import UserError  # noqa: E402
from jitrl_cli.paths import require_game  # noqa: E402


def read_route(path: Path) -> list[str]:
    """The actions of a route file: one per line, ``#`` comments and blank lines skipped.

    Raises:
        OSError: if the file cannot be read.
        ValueError: if it holds no action.
    """
    actions = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    actions = [a for a in actions if a]
    if not actions:
        raise ValueError(f"{path} holds no action")
    return actions


def walkthrough_scores(env: JerichoEnv, steps: list[int], actions: list[str] | None = None) -> dict:
    """Play the walkthrough of ``env``'s game (or ``actions``) from a reset.

    Args:
        env: an open Jericho environment (it is reset first).
        steps: step counts to report the score at (each ≥ 1).
        actions: the route to play; None plays Jericho's walkthrough of the game.

    Returns:
        ``{"walkthrough_length", "max_score", "score_at": {step: score}, "rewards": [{step, action,
        reward, score}]}``, played up to the largest step; steps beyond the route's end report
        its final score. ``walkthrough_length`` is the length of the route played.
    """
    env.reset()
    if actions is None:
        actions = env.walkthrough()
    score, rewards, score_at = 0.0, [], {}
    for t, action in enumerate(actions[: max(steps)], start=1):
        _, reward, terminated, _, info = env.step(action)
        score = float(info["score"])
        if reward:
            rewards.append({"step": t, "action": action, "reward": reward, "score": score})
        if t in steps:
            score_at[t] = score
        if terminated:
            break
    for t in steps:
        score_at.setdefault(t, score)
    return {"walkthrough_length": len(actions), "max_score": env.max_score, "score_at": score_at, "rewards": rewards}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("game", help="game name (e.g. zork1) or story file")
    parser.add_argument("--steps", default="10,20,30,40,50,60", help="comma list of step counts")
    parser.add_argument("--rom-dir", type=Path, default=None, help="directory searched first for games")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument("--route", type=Path, default=None, help="play this action list (one per line) instead of the walkthrough")
    args = parser.parse_args(argv)
    try:
        steps = sorted({int(s) for s in args.steps.split(",")})
    except ValueError:
        parser.error(f"--steps must be a comma list of integers, got {args.steps!r}")
    if steps[0] < 1:
        parser.error("--steps must be at least 1")
    route = None
    if args.route is not None:
        try:
            route = read_route(args.route)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            parser.error(f"--route: {exc}")
    try:
        env = JerichoEnv(require_game(args.game, args.rom_dir), max_steps=None)
    except (UserError, AdapterError) as exc:
        parser.error(str(exc))
    try:
        result = {"game": env.name, "route": str(args.route) if route else "walkthrough", **walkthrough_scores(env, steps, route)}
    finally:
        env.close()
    print(f"{result['game']}: {result['route']} of {result['walkthrough_length']} steps, max score {result['max_score']:g}")
    print("score after " + ", ".join(f"{t} steps: {s:g}" for t, s in result["score_at"].items()))
    for r in result["rewards"]:
        print(f"  step {r['step']:3d}  {r['action']:<28} {r['reward']:+g} → {r['score']:g}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
