"""Jericho (Z-machine text games) as a Gymnasium-style environment with candidate actions."""

from __future__ import annotations

import hashlib
import time
import warnings
from enum import Enum
from pathlib import Path
from typing import Any

from adapters.base import AdapterError
from adapters.state_key import build_state_key
from adapters.valid_actions import ValidActionFinder

#: fallback candidates when the valid-action finder times out
FALLBACK_ACTIONS = ["north", "south", "east", "west", "up", "down", "look", "inventory"]
Z_MACHINE_SUFFIXES = (".z1", ".z2", ".z3", ".z4", ".z5", ".z6", ".z7", ".z8", ".dat")


class StateHash(str, Enum):
    """What makes two world states "the same" (the exact-match and cycle key, ``info["state_hash"]``).

    * ``jericho``: Jericho's ``get_world_state_hash``, an MD5 of the whole object tree (each object's
      parent, sibling, child, attributes, properties) and the game's special RAM. Taking an object and
      dropping it again gives a new hash, because the dropped object becomes its room's first child.
    * ``unordered``: the same tree without the sibling and child links, i.e. each object's container,
      attributes and properties, plus the special RAM: the order of the objects inside a container
      is ignored, so "take rope, drop rope" is back in the state it started from.
    * ``local``: what the player can see and carry: the player's location, every object inside it
      (the inventory included, at any depth; the player object itself left out) and every object in
      no room (doors, windows), each with its container, attributes and properties, the score, and
      the special RAM (:func:`local_state_hash`). Objects in other rooms are left out, so
      visits that differ only far away (the lantern left upstairs, a window opened earlier) share
      their experience. Two such states can still need different actions (an abstraction, not the
      true state).
    """

    jericho = "jericho"
    unordered = "unordered"
    local = "local"


#: prefixes of the non-Jericho hashes, so that no two kinds are ever equal in a memory holding several
UNORDERED_PREFIX = "u:"
LOCAL_PREFIX = "l:"


def _objects_digest(prefix: str, objects, extra: str, env) -> str:
    """``prefix`` + the MD5 of the objects' (number, name, parent, attributes, properties), ``extra``
    and the special RAM that Jericho's own ``get_world_state_hash`` includes."""
    text = "; ".join(f"{o.num} {o.name} {o.parent} {list(o.attr)} {list(o.properties)}" for o in objects)
    ram = env._get_special_ram()
    return prefix + hashlib.md5(f"{text}|{extra}|{ram.tolist()}".encode("utf-8")).hexdigest()


def unordered_state_hash(env) -> str:
    """The world state of a Jericho ``FrotzEnv`` up to the order of objects within their containers.

    Args:
        env: a ``jericho.FrotzEnv`` after ``reset``.

    Returns:
        ``"u:"`` + 32 hex digits: the MD5 of each cleaned object's (number, name, parent, attributes,
        properties) in object order, and of the special RAM.
    """
    return _objects_digest(UNORDERED_PREFIX, env.get_world_objects(clean=True), "", env)


def local_state_hash(env) -> str:
    """The part of a Jericho ``FrotzEnv``'s world state the player can see and carry (:class:`StateHash`).

    Rooms are the objects that share the location's container (Zork's ROOMS). An object counts unless
    its chain of containers reaches a room other than the player's: what is here, what the player
    carries, and the objects in no room (doors and windows kept as "local globals", objects not yet
    in play) are in; what lies in other rooms is out.

    Args:
        env: a ``jericho.FrotzEnv`` after ``reset``.

    Returns:
        ``"l:"`` + 32 hex digits: the MD5 of the location's number, those objects (in object order, each
        with its container, attributes and properties; the player object itself left out, its inventory
        in), the score and the special RAM. The whole object tree if the player has no location.
    """
    objects = env.get_world_objects(clean=True)
    location = env.get_player_location()
    if location is None:
        return _objects_digest(LOCAL_PREFIX, objects, f"score {env.get_score()}", env)
    parent = {o.num: o.parent for o in objects}
    here = location.num
    rooms = {o.num for o in objects if o.parent == location.parent} - {here}
    player = env.get_player_object().num  # left out itself (its attributes flip with no effect); its inventory counts

    def elsewhere(num: int) -> bool:
        seen = set()
        while num and num not in seen:  # object 0 is the root; `seen` guards against a malformed tree
            if num in rooms:
                return True
            seen.add(num)
            num = parent.get(num, 0)
        return False

    kept = [o for o in objects if o.num not in rooms and o.num not in (here, player) and not elsewhere(o.num)]
    return _objects_digest(LOCAL_PREFIX, kept, f"at {here} score {env.get_score()}", env)


def check_story_file(path: Path) -> dict:
    """Validate a Z-machine story file and return Jericho's bindings for it.

    Raises:
        AdapterError: if the file is missing, not a Z-machine story, or not supported by
            Jericho (no score/valid-action support).
    """
    import jericho.defines

    if not path.is_file():
        raise AdapterError(f"story file not found: {path}")
    data = path.read_bytes()
    if len(data) < 64 or not 1 <= data[0] <= 8:
        raise AdapterError(f"{path} is not a Z-machine story file")
    bindings = jericho.defines.BINDINGS_DICT.get(hashlib.md5(data).hexdigest())
    if not bindings:
        raise AdapterError(f"{path.name} is not a game Jericho supports (no score or valid-action support)")
    return bindings


class JerichoEnv:
    """A Jericho game with score, location, inventory, world-state hash and valid actions.

    Args:
        rom_path: the story file (.z5, .z8, ...).
        seed: emulator seed; None uses the walkthrough's seed from Jericho's bindings.
        max_steps: steps after which ``truncated`` is True (None: no limit).
        valid_actions_timeout: seconds per valid-action computation before falling back.
        state_hash: how ``info["state_hash"]`` identifies a world state (:class:`StateHash`).

    ``info`` keys: those of :data:`adapters.base.INFO_KEYS` (``state_key``: :func:`adapters.state_key.build_state_key`
    of location, inventory, score and the observation; ``state_hash``: per :class:`StateHash`), and
    valid_actions_timeout (bool). ``reward`` is the score change of the step (Jericho's own); the death
    penalty is :class:`adapters.wrappers.DeathPenalty`'s.

    Raises:
        AdapterError: on a missing, invalid or unsupported story file.
    """

    def __init__(
        self,
        rom_path: str | Path,
        seed: int | None = None,
        max_steps: int | None = None,
        valid_actions_timeout: float = 10.0,
        state_hash: StateHash | str = StateHash.jericho,
    ) -> None:
        import jericho

        try:
            self.state_hash = StateHash(state_hash)
        except ValueError:
            raise AdapterError(f"unknown state hash {state_hash!r}: use one of {', '.join(h.value for h in StateHash)}") from None
        self.state_hash_kind = self.state_hash.value

        path = Path(rom_path)
        self.bindings = check_story_file(path)
        self.name = self.bindings.get("name", path.stem)
        self.rom_path = str(path.resolve())
        self.seed = seed if seed is not None else self.bindings.get("seed")
        self.max_steps = max_steps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._env = jericho.FrotzEnv(self.rom_path, seed=self.seed)
        self.max_score = float(self._env.get_max_score())
        self._finder = ValidActionFinder(self.rom_path, self.seed, valid_actions_timeout)
        self._cache: dict[str, list[str]] = {}
        self._steps = 0
        self.last_timings: dict[str, float] = {}

    # -- Gymnasium API ------------------------------------------------------------------
    def reset(self) -> tuple[str, dict[str, Any]]:
        """Restart the game: (observation, info)."""
        obs, _ = self._env.reset()
        self._steps = 0
        return obs, self._info(obs, done=False)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Send a command: (observation, reward = score delta, terminated, truncated, info)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obs, reward, done, _ = self._env.step(action)
        self._steps += 1
        truncated = not done and self.max_steps is not None and self._steps >= self.max_steps
        return obs, float(reward), bool(done), truncated, self._info(obs, done=done)

    def close(self) -> None:
        """Stop the valid-action child process and the emulator."""
        self._finder.close()
        self._env.close()

    # -- state ---------------------------------------------------------------------------
    def candidate_actions(self, world_hash: str | None = None) -> tuple[list[str], bool]:
        """Valid actions in the current state (sorted), cached by Jericho's world-state hash.

        Args:
            world_hash: the current state's ``get_world_state_hash()`` if the caller has it (None: computed).

        Returns:
            (actions, timed_out): on timeout the fallback navigation actions.
        """
        key = world_hash or self._env.get_world_state_hash()
        if key in self._cache:
            return self._cache[key], False
        actions = self._finder(self._env.get_state())
        if actions is None:
            return list(FALLBACK_ACTIONS), True
        # sorted: Jericho returns them in an order that depends on the process's string hashing (PYTHONHASHSEED),
        # and the sampler's choice depends on the order, so runs in other processes would differ
        actions = sorted(actions) if actions else list(FALLBACK_ACTIONS)
        self._cache[key] = actions
        return actions, False

    def _info(self, obs: str, done: bool) -> dict[str, Any]:
        """``info`` of the state the game is in now, whose observation is ``obs``."""
        env = self._env
        jericho_hash = env.get_world_state_hash()  # the valid-action cache's key, and the default state key
        location = env.get_player_location()
        victory = bool(env.victory())
        game_over = bool(env.game_over())
        candidates: list[str] = []
        timed_out = False
        t0 = time.perf_counter()
        if not done:
            candidates, timed_out = self.candidate_actions(jericho_hash)
        seconds = time.perf_counter() - t0
        score = float(env.get_score())
        inventory = [o.name for o in env.get_inventory()]
        location_name = location.name if location is not None else None
        return {
            "score": score,
            "moves": int(env.get_moves()),
            "max_score": self.max_score,
            "location": location_name,
            "inventory": inventory,
            "state_key": build_state_key(location_name, inventory, score, obs),
            "state_hash": self._state_hash(jericho_hash),
            "candidates": candidates,
            "victory": victory,
            "game_over": game_over and not victory,
            "valid_actions_timeout": timed_out,
            "valid_actions_seconds": seconds,
        }

    def _state_hash(self, jericho_hash: str) -> str:
        """``info["state_hash"]`` of the current state under ``self.state_hash``."""
        if self.state_hash is StateHash.unordered:
            return unordered_state_hash(self._env)
        if self.state_hash is StateHash.local:
            return local_state_hash(self._env)
        return jericho_hash

    def walkthrough(self) -> list[str]:
        """Jericho's walkthrough actions for this game."""
        return self._env.get_walkthrough()
