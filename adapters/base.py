"""The environment contract the agent loop relies on (Gymnasium-style, text observations, candidate actions).

Every adapter (:class:`adapters.jericho_env.JerichoEnv`, :class:`adapters.miniwob_env.MiniWoBEnv`,
:class:`adapters.webarena_env.WebArenaEnv`) keeps it strictly, and the agent reads nothing else:

* ``reset() -> (observation, info)`` and ``step(action) -> (observation, reward, terminated, truncated,
  info)``, as in Gymnasium ≥ 0.26. ``reward`` is used as given: for a game it is the change of the
  game's score caused by the step (score points); reward shaping such as the death penalty is a
  wrapper around the adapter (:mod:`adapters.wrappers`), never the agent's arithmetic.
  ``terminated``: the episode reached an end state (won, lost, answered); ``truncated``: the
  adapter's step limit cut it off.
* ``info`` (from reset and from every step) carries these keys (:data:`INFO_KEYS`):

  ====================== ============== =====================================================================
  key                    type           meaning
  ====================== ============== =====================================================================
  candidates             list[str]      the candidate actions of this state; empty once the episode is over
  state_key              str            the text the memory embeds for this state (the adapter's abstraction;
                                        :mod:`adapters.state_key` for text games)
  state_hash             str | None     an exact-match key of the world state (None where the state has none)
  score                  float          the score so far (game points; web tasks: the reward once done, else 0)
  max_score              float | None   the highest score possible
  location               str | None     where the player is (room name, short URL)
  inventory              list[str]      what the player carries ([] for web tasks)
  victory                bool           the episode was won
  game_over              bool           the episode was lost (a game's death; never for web tasks)
  moves                  int            moves made (the game's own counter where it has one)
  valid_actions_seconds  float          seconds of this reset/step spent finding the candidates (0.0 where
                                        the adapter does not time them apart from the step)
  ====================== ============== =====================================================================

  Adapters add their own keys (Jericho: ``valid_actions_timeout``; web: ``goal``, ``url``, ``error``,
  ``blocked_requests``, ``action_keys``: per candidate, what the memory knows it by, ...).
* attributes: ``name`` (the game or task) and ``state_hash_kind`` (what ``info["state_hash"]`` means,
  recorded with each episode's parameters: a :class:`adapters.jericho_env.StateHash` value, or None
  where the hash is just a digest of the observation).

Why no ``gymnasium.Env``/``gymnasium.Wrapper``: gymnasium is installed only as a dependency of
``miniwob`` (not of this project), its ``Wrapper`` accepts only ``gymnasium.Env`` subclasses, and an
``Env`` declares fixed ``observation_space``/``action_space``, which a text game whose valid actions
change every state does not have (``reset`` also takes no ``seed``: a Jericho game's seed is fixed per
story file, a web task's per episode by ``select_instance``). The wrappers of :mod:`adapters.wrappers`
have Gymnasium's shape (``env``, ``unwrapped``, attribute forwarding, ``step`` returning the five-tuple)
without the dependency.
"""

from __future__ import annotations

from typing import Any, Protocol

#: the ``info`` keys every adapter gives at reset and at every step (see the module docstring)
INFO_KEYS = (
    "candidates", "state_key", "state_hash", "score", "max_score", "location", "inventory", "victory",
    "game_over", "moves", "valid_actions_seconds",
)


class AdapterError(Exception):
    """An environment cannot be created or used (missing/unsupported game, missing parser model).

    The message is one line, meant for the user.
    """


class Environment(Protocol):
    """Gymnasium-style environment with text observations and a finite candidate-action set.

    See the module docstring for the contract (``info`` keys: :data:`INFO_KEYS`).
    """

    name: str
    state_hash_kind: str | None

    def reset(self) -> tuple[str, dict[str, Any]]:
        """Start an episode: (observation, info)."""
        ...

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Apply an action: (observation, reward, terminated, truncated, info)."""
        ...

    def close(self) -> None:
        """Free the environment's resources (subprocesses, emulator)."""
        ...
