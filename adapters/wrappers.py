"""Reward wrappers around an :class:`adapters.base.Environment`, in Gymnasium's shape.

A wrapper holds the environment it wraps (``env``), forwards ``reset``, ``step``, ``close`` and every
other attribute to it (``name``, ``walkthrough``, ``select_instance``, ...), and changes one thing.
Gymnasium's own ``gymnasium.Wrapper`` is not used: it accepts ``gymnasium.Env`` subclasses only (see
:mod:`adapters.base` for why the adapters are not ones).

:class:`DeathPenalty` subtracts a fixed penalty from the reward of the step that loses the game.

The novelty reward (``--novelty``, :func:`jitrl_cli.core.returns.novelty_rewards`) is *not* a wrapper,
on purpose; it stays in the agent's credit assignment because

* it counts the visits of a world state in the agent's memory (each eval arm has its own memory, while
  the arms share one environment), i.e. it is a property of the learner, not of the environment;
* it is added after the LLM evaluator's step rewards replace (``--step-rewards llm``) or join
  (``both``) the environment's rewards: with ``llm`` the game rewards are dropped but the novelty
  bonus stays. As part of the environment's reward it would be dropped with them (and summed in
  another order with ``both``), which would change the stored returns.
"""

from __future__ import annotations

from typing import Any

from adapters.base import Environment


class Wrapper:
    """Wraps an environment: forwards ``reset``/``step``/``close`` and any other attribute (Gymnasium's shape).

    Args:
        env: the environment (or wrapper) to wrap.
    """

    def __init__(self, env: Environment) -> None:
        self.env = env

    def __getattr__(self, name: str) -> Any:
        if name == "env" or name.startswith("__"):  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.env, name)

    @property
    def unwrapped(self) -> Environment:
        """The adapter at the bottom of the wrapper stack."""
        env = self.env
        while isinstance(env, Wrapper):
            env = env.env
        return env

    def reset(self) -> tuple[str, dict[str, Any]]:
        """(observation, info) of the wrapped environment's reset."""
        return self.env.reset()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """(observation, reward, terminated, truncated, info) of the wrapped environment's step."""
        return self.env.step(action)

    def close(self) -> None:
        """Close the wrapped environment."""
        self.env.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}{self.env!r}>"


class DeathPenalty(Wrapper):
    """Subtract ``penalty`` from the reward of the step that loses the game.

    A step loses the game when it terminates the episode with ``info["game_over"]`` (a death, not a
    victory; Jericho's ``game_over() and not victory()``). Its reward becomes r − penalty, in score
    points; every other step's reward is passed on unchanged. Terminating ends the episode, so the
    penalty is paid at most once per episode.

    Args:
        env: the environment to wrap.
        penalty: the penalty, a finite number ≥ 0 (score points).

    Raises:
        ValueError: a negative penalty.
    """

    def __init__(self, env: Environment, penalty: float) -> None:
        if not penalty >= 0:
            raise ValueError(f"death penalty must be >= 0, got {penalty}")
        super().__init__(env)
        self.penalty = float(penalty)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """The wrapped step, with the penalty subtracted from a losing step's reward."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated and info["game_over"]:
            reward = float(reward) - self.penalty
        return obs, reward, terminated, truncated, info


def find_wrapper(env: Environment, kind: type[Wrapper]) -> Wrapper | None:
    """The outermost wrapper of type ``kind`` in ``env``'s wrapper stack (None if there is none)."""
    while isinstance(env, Wrapper):
        if isinstance(env, kind):
            return env
        env = env.env
    return None
