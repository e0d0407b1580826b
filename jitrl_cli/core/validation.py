"""One-line checks of the numeric and choice options, shared by every command that takes them (`play`, `eval`,
`web`, `memory inspect`): each option is validated by one rule with one message.

The rules live here and nowhere else. They are applied twice:

* by :func:`check_options`, which the commands (and :func:`jitrl_cli.commands.app.agent_config`) call with their
  values, so that a direct call of a command is checked too;
* by :func:`install_option_checks`, which :func:`jitrl_cli.commands.app.main` runs over the whole command tree: every
  option whose parameter name has a rule is checked as soon as it is parsed, and every float option of
  every command must be finite (no ``nan``, ``inf``), whether or not it has a rule. A bad value therefore
  fails before anything is loaded or written, with one line ``error: ...`` and exit code 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum
from typing import Any

from adapters.jericho_env import StateHash
from jitrl_cli.core.advantage import AcrossWorlds, Exploration, QEstimate, UnseenQ
from jitrl_cli.core.backup import ReturnEstimate
from jitrl_cli.errors import UserError
from jitrl_cli.core.reflection import StepRewards
from jitrl_cli.llm.scoring import Prior

SEED_MAX = 2**32 - 1
N_CTX_MIN, N_CTX_MAX = 1024, 262_144
VALID_ACTIONS_TIMEOUT_MAX = 3600.0


def _finite(rule: Callable[[float], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and rule(v)


# option name → (valid?, what a valid value is); every rule also demands a finite number
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "episodes": (_finite(lambda v: v >= 1), "at least 1"),
    "seeds": (_finite(lambda v: v >= 1), "at least 1"),
    "workers": (_finite(lambda v: 1 <= v <= 256), "at least 1 and at most 256"),
    "n_gpu_layers": (_finite(lambda v: v >= 0), "at least 0"),
    "max_steps": (_finite(lambda v: v >= 1), "at least 1"),
    "seed": (_finite(lambda v: 0 <= v <= SEED_MAX), f"an integer in [0, {SEED_MAX}]"),
    "instances": (_finite(lambda v: v >= 0), ">= 0"),
    "n_ctx": (_finite(lambda v: N_CTX_MIN <= v <= N_CTX_MAX), f"at least {N_CTX_MIN} and at most {N_CTX_MAX}"),
    "valid_actions_timeout": (_finite(lambda v: 0 < v <= VALID_ACTIONS_TIMEOUT_MAX),
                              f"> 0 and at most {VALID_ACTIONS_TIMEOUT_MAX:g} (seconds)"),
    "beta": (_finite(lambda v: v >= 0), "a finite number >= 0"),
    "gamma": (_finite(lambda v: 0 <= v <= 1), "in [0, 1]"),
    "k": (_finite(lambda v: v >= 1), "at least 1"),
    "min_similarity": (_finite(lambda v: -1 <= v <= 1), "in [-1, 1]"),
    "temperature": (_finite(lambda v: v > 0), "a finite number > 0"),
    "alpha": (_finite(lambda v: v >= 0), "a finite number >= 0"),
    "bonus_prob": (_finite(lambda v: 0 <= v <= 1), "in [0, 1]"),
    "death_penalty": (_finite(lambda v: v >= 0), "a finite number >= 0"),
    "death_credit": (_finite(lambda v: v >= 0 and v == int(v)), "an integer >= 0"),
    "cautious_after": (_finite(lambda v: v >= 0 and v == int(v)), "an integer >= 0"),
    "novelty": (_finite(lambda v: v >= 0), "a finite number >= 0"),
    "history": (_finite(lambda v: v >= 0 and v == int(v)), "an integer >= 0"),
    "avoid_deaths_horizon": (_finite(lambda v: v >= 1 and v == int(v)), "an integer >= 1"),
}
# option name → the enum of its values
_CHOICES: dict[str, type[Enum]] = {
    "exploration": Exploration, "q_estimate": QEstimate, "step_rewards": StepRewards, "returns": ReturnEstimate,
    "prior": Prior, "state_hash": StateHash, "unseen_q": UnseenQ, "across_worlds": AcrossWorlds,
}


def flag_name(name: str) -> str:
    """The command-line flag of a parameter name: ``max_steps`` → ``--max-steps``."""
    return "--" + name.replace("_", "-")


def has_rule(name: str) -> bool:
    """Whether parameter ``name`` has a rule here (a range or a set of choices)."""
    return name in _RULES or name in _CHOICES


# options that act only together with others: (the options a rule reads, whether their values break it, the error)
_COMBINATIONS: list[tuple[tuple[str, ...], Callable[..., bool], str]] = [
    (("avoid_deaths_horizon", "avoid_deaths", "avoid_deaths_own"),
     lambda avoid_deaths_horizon, avoid_deaths, avoid_deaths_own: (avoid_deaths_horizon > 1
                                                                   and not (avoid_deaths or avoid_deaths_own)),
     "--avoid-deaths-horizon needs --avoid-deaths or --avoid-deaths-own"),
    (("safe_cycles", "avoid_cycles"),  # --safe-cycles changes what cycle avoidance does
     lambda safe_cycles, avoid_cycles: safe_cycles and not avoid_cycles,
     "--safe-cycles needs --avoid-cycles"),
    (("go_explore", "replay_best"),  # two ways to choose where an episode returns to first
     lambda go_explore, replay_best: go_explore and replay_best,
     "--go-explore and --replay-best both choose where an episode returns to: give one"),
    (("across_worlds", "q_estimate"),  # --across-worlds chooses between the world states of the expectimax
     lambda across_worlds, q_estimate: (AcrossWorlds(across_worlds) is AcrossWorlds.mean
                                        and QEstimate(q_estimate) is not QEstimate.expectimax),
     "--across-worlds mean needs --q-estimate expectimax"),
]


def check_combinations(**values: Any) -> None:
    """Check the options that act only together with others (parameter names → values), each rule whose options are
    all given: ``--avoid-deaths-horizon`` above 1 needs ``--avoid-deaths`` or ``--avoid-deaths-own``, ``--safe-cycles``
    needs ``--avoid-cycles`` (not ``--no-avoid-cycles`` or ``--paper``'s settings), ``--go-explore`` and
    ``--replay-best`` exclude each other, ``--across-worlds mean`` needs ``--q-estimate expectimax`` (not ``max``,
    ``mean`` or ``--paper``'s).

    Raises:
        UserError: one line for the first rule broken.
    """
    for names, broken, message in _COMBINATIONS:
        if all(name in values for name in names) and broken(**{name: values[name] for name in names}):
            raise UserError(message)


def check_options(**values: Any) -> None:
    """Validate the given options (parameter names, e.g. ``gamma=0.95``), in order.

    ``None`` stands for "not given" (an optional option such as `web`'s ``--max-steps``) and passes.

    Raises:
        UserError: one line naming the first invalid option, e.g. ``--gamma must be in [0, 1], got 2.0``.
        KeyError: for an option name no rule knows (a programming error).
    """
    for name, value in values.items():
        flag = flag_name(name)
        if name in _CHOICES:
            allowed = [member.value for member in _CHOICES[name]]
            if value not in allowed:
                raise UserError(f"{flag} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {value!r}")
            continue
        valid, rule = _RULES[name]
        if value is not None and not valid(value):
            raise UserError(f"{flag} must be {rule}, got {value}")


def _check_parsed(param: Any, original: Callable[..., Any] | None) -> Callable[..., Any]:
    """A click parameter callback: the parameter's rule, finiteness of a float value, then its own callback."""
    name = param.name or ""
    flag = next((o for o in getattr(param, "opts", []) if o.startswith("--")), flag_name(name))

    def callback(ctx: Any, p: Any, value: Any) -> Any:
        if value is not None and not getattr(ctx, "resilient_parsing", False):  # resilient: shell completion
            values = value if getattr(p, "multiple", False) or getattr(p, "nargs", 1) != 1 else (value,)
            for v in values:
                if has_rule(name):
                    check_options(**{name: v})
                if isinstance(v, float) and not math.isfinite(v):
                    raise UserError(f"{flag} must be a finite number, got {v}")
        return original(ctx, p, value) if original is not None else value

    return callback


def install_option_checks(command: Any) -> Any:
    """Attach the rules to every option of ``command`` (a click command, as ``typer.main.get_command`` builds
    it) and of its subcommands, recursively, in place.

    An option is checked when click parses it (defaults included): by its rule if its parameter name has
    one, and, for every float option, for finiteness. A failure raises :class:`UserError`, which
    :func:`jitrl_cli.commands.app.main` prints as one line with exit code 2. Returns ``command``.

    Typer may bring its own copy of click, so options are recognised by their attributes, not their class,
    and a float by its parsed value.
    """
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", None) == "option" and not getattr(param, "is_flag", False):
            param.callback = _check_parsed(param, param.callback)
    for sub in (getattr(command, "commands", None) or {}).values():
        install_option_checks(sub)
    return command
