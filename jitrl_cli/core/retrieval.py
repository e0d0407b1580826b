"""Retrieval: the k nearest stored steps of a state, as the advantage estimator's neighbours (paper §4.1)."""

from __future__ import annotations

import dataclasses

import numpy as np

from jitrl_cli.core.advantage import Neighbour, normalize_action
from memories.store import MemoryStore, RetrievedStep


def retrieve_steps(
    store: MemoryStore, namespace: str, vector: np.ndarray, k: int, min_similarity: float, world_hash: str | None = None,
    returns: dict[int, float] | None = None, fill: bool = True,
) -> list[RetrievedStep]:
    """The neighbours N(s) of a state as stored steps: at most ``k`` with cosine similarity ≥ ``min_similarity``.

    With ``world_hash`` (the exact-match key of the current state), steps taken in exactly the same
    world state come first (similarity 1, most recent first). The ANN neighbours fill the
    remaining places (``fill``), or stand in only for a state never visited (``fill=False``):
    similar states are other states, and under Q̂ = max one good return of an action
    taken there would outrank what this very state's steps show.

    Args:
        store: the memory.
        namespace: game (or web suite/site) whose steps are searched.
        vector: the state key's embedding, float32 of shape (dim,).
        k: maximum neighbours.
        min_similarity: threshold in [−1, 1].
        world_hash: exact-match key of the current state, or None for ANN only.
        returns: step id → return to report instead of the stored G (the backed-up returns of
            :func:`jitrl_cli.core.backup.backed_up_returns`); None keeps the stored returns.
        fill: with ``world_hash``, whether ANN neighbours fill the places the exact steps left.

    Returns:
        steps by decreasing similarity (action, reward, return G, episode, step, state key).
    """
    return retrieve_neighbourhood(store, namespace, vector, k, min_similarity, world_hash, returns, fill)[0]


def retrieve_neighbourhood(
    store: MemoryStore, namespace: str, vector: np.ndarray, k: int, min_similarity: float, world_hash: str | None = None,
    returns: dict[int, float] | None = None, fill: bool = True, similar: bool = False, exact_all: bool = False,
) -> tuple[list[RetrievedStep], list[RetrievedStep]]:
    """N(s) as :func:`retrieve_steps` (same arguments), and with ``similar`` the state's neighbourhood N'(s) for
    back-off states (:func:`jitrl_cli.core.advantage.estimate_advantages`): the ANN neighbours (at most ``k``) that
    are not in N(s), where N(s) holds steps of this very world state; empty otherwise (N(s) then already is the ANN
    neighbourhood). One ANN query serves both.

    With ``exact_all`` (`--exact-all`), N(s) holds every stored step of this very world state, not only the ``k``
    most recent: Q̂ and V̂ become the tabular estimates over all of the state's visits, so a death or a best return
    older than the last k visits still counts (with k = 50, zork2's Foot Bridge, visited at step 10 of most
    episodes, forgot by episode 23 that "jump" had killed there). The ANN neighbours still number at most ``k``.

    Returns:
        (N(s), N'(s)), each by decreasing similarity.
    """
    hits = store.query_exact(namespace, world_hash, None if exact_all else k) if world_hash else []
    others: list[RetrievedStep] = []
    fills = len(hits) < k and (fill or not hits)
    if fills or (similar and hits):
        own = {h.id for h in hits}
        others = [h for h in store.query(namespace, vector, k=k, min_similarity=min_similarity) if h.id not in own]
    steps = hits + others[: k - len(hits)] if fills else hits
    near = others if similar and hits else []
    if returns:
        steps, near = ([dataclasses.replace(h, ret=returns.get(h.id, h.ret)) for h in group] for group in (steps, near))
    return steps, near


def situation_deaths(
    store: MemoryStore, namespace: str, situation: str, actions: list[str], returns: dict[int, float] | None = None,
    world_hash: str | None = None, horizon: int = 1,
) -> list[RetrievedStep]:
    """The stored steps, taken in this situation, of the actions that ended an episode in a death there at least once
    (or, with ``horizon`` H, were among the last H steps of an episode that died) and were never taken from this very
    world state: the steps `--avoid-deaths` values those actions by
    (:func:`jitrl_cli.core.advantage.estimate_advantages`, ``deadly``). A death is a last step that ended its episode
    before the step limit (:data:`memories.store.TERMINAL`) with a negative reward (the death penalty, a lost game).

    Args:
        store: the memory.
        namespace: the game.
        situation: the state's situation, a prefix of its state key (:func:`adapters.state_key.situation_key`).
        actions: the candidate actions.
        returns: step id → return to report instead of the stored G (as :func:`retrieve_steps`).
        world_hash: the state's own world-state hash: an action taken from it (a step of this situation with this
            hash) is left to the state's own steps; None: none is.
        horizon: H ≥ 1: an action counts as deadly where a step of it in this situation was one of the last H steps of
            an episode that ended in a death (1: the step that died; 3: also the two steps before it, such as the move
            into zork's dark that left the player a choice only among moves that meet the grue).

    Returns:
        every step of those actions in this situation, the deaths and the others (survivals count in Q̂), oldest first;
        [] where none of the actions died here.
    """
    steps = store.query_situation(namespace, situation, [normalize_action(a) for a in actions])
    own = {normalize_action(h.action) for h in steps if world_hash is not None and h.world_hash == world_hash}
    died = store.episode_deaths(h.episode_id for h in steps)  # episode → its last step, for those that died
    deadly = {normalize_action(h.action) for h in steps if h.episode_id in died and died[h.episode_id] - h.step < horizon}
    deadly -= own
    steps = [h for h in steps if normalize_action(h.action) in deadly]
    if returns:
        steps = [dataclasses.replace(h, ret=returns.get(h.id, h.ret)) for h in steps]
    return steps


def as_neighbours(steps: list[RetrievedStep]) -> list[Neighbour]:
    """The advantage estimator's view of retrieved steps: action, return G, similarity, row id, and the world
    states the step was taken in and led to (for ``--q-estimate expectimax``)."""
    return [Neighbour(h.action, h.ret, h.similarity, h.id, h.world_hash, h.next_world) for h in steps]

