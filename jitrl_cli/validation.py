"""One-line checks of the policy options, shared by every command that takes them (`play`, `eval`,
`web`, `memory inspect`): each option is validated by one rule with one message."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from adapters.jericho_env import StateHash
from jitrl_cli.advantage import Exploration, QEstimate
from jitrl_cli.backup import ReturnEstimate
from jitrl_cli.errors import UserError
from jitrl_cli.reflection import StepRewards
from jitrl_cli.scoring import Prior


# option name → (valid?, what a valid value is)
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_steps": (lambda v: v >= 1, "at least 1"),
    "beta": (lambda v: v >= 0, ">= 0"),
    "gamma": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "k": (lambda v: v >= 1, "at least 1"),
    "min_similarity": (lambda v: -1 <= v <= 1, "in [-1, 1]"),
    "temperature": (lambda v: v > 0, "> 0"),
    "bonus_prob": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "novelty": (lambda v: v >= 0, ">= 0"),
}
# option name → the enum of its values
_CHOICES: dict[str, type[Enum]] = {
    "exploration": Exploration, "q_estimate": QEstimate, "step_rewards": StepRewards, "returns": ReturnEstimate,
    "prior": Prior, "state_hash": StateHash,
}


def check_options(**values: Any) -> None:
    """Validate the given policy options (parameter names, e.g. ``gamma=0.95``), in order.

    Raises:
        UserError: one line naming the first invalid option, e.g. ``--gamma must be in [0, 1], got 2.0``.
        KeyError: for an option name no rule knows (a programming error).
    """
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if name in _CHOICES:
            allowed = [member.value for member in _CHOICES[name]]
            if value not in allowed:
                raise UserError(f"{flag} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {value!r}")
            continue
        valid, rule = _RULES[name]
        if not valid(value):
            raise UserError(f"{flag} must be {rule}, got {value}")
