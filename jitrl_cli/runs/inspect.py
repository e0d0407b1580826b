"""`jitrl memory inspect`: what the agent would retrieve and estimate at a given state.

The state is either free text (an observation, or a full state key) or a stored
step; the neighbours and the Q̂/V̂/A table come from the same retrieval
(:func:`jitrl_cli.core.retrieval.retrieve_steps`) and estimator
(:func:`jitrl_cli.core.advantage.estimate_advantages`) the agent uses at every step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from jitrl_cli.core.advantage import AcrossWorlds, Exploration, QEstimate, UnseenQ, estimate_advantages, normalize_action
from jitrl_cli.core.backup import ReturnEstimate, backed_up_returns
from jitrl_cli.errors import UserError
from jitrl_cli.core.retrieval import as_neighbours, retrieve_neighbourhood, situation_deaths
from adapters.state_key import build_state_key, situation_of
from adapters.web_observation import backoff_key
from memories.stats import find_episode_ids
from memories.store import MemoryStore

_MAX_LOCATION_CHARS = 40


@dataclass
class InspectedState:
    """The state being inspected: its game, state key, embedding (float32, shape (dim,)) and, for a
    stored step, its world-state hash (the exact-match key; None for text)."""

    game: str
    state_key: str
    vector: np.ndarray
    source: str
    world_hash: str | None = None


def state_from_text(store: MemoryStore, game: str, text: str) -> InspectedState:
    """A state given as text: a full state key (a game's ``location: … | …`` or a web page's ``goal: … | …``,
    :func:`adapters.web_observation.state_key`) is used as is; anything else is taken as an observation whose
    first line, when short, names the location (as Jericho's room titles do)."""
    text = text.strip()
    if not text:
        raise UserError("--state is empty")
    if text.lower().startswith(("location:", "goal:")):
        key = text
    else:
        first = text.splitlines()[0].strip()
        location = first if len(first) <= _MAX_LOCATION_CHARS else None
        key = build_state_key(location, [], None, text)
    return InspectedState(game, key, store.embedder.embed(key), "text")


def state_from_step(store: MemoryStore, ref: str) -> InspectedState:
    """A stored step ``EPISODE:STEP`` (episode id or uuid prefix, 0-based step).

    Raises:
        UserError: for a malformed reference or an episode/step that does not exist.
    """
    episode, sep, step = ref.partition(":")
    if not sep or not episode or not step.strip().isdigit():
        raise UserError(f"--step must be EPISODE:STEP (e.g. 12:3), got {ref!r}")
    rows = find_episode_ids(store, episode)
    if not rows:
        raise UserError(f"no episode {episode!r} in memory {store.root} (see `jitrl memory list`)")
    if len(rows) > 1:
        raise UserError(f"episode prefix {episode!r} is ambiguous ({len(rows)} episodes)")
    found = store.step_state(rows[0], int(step))
    if found is None:
        raise UserError(f"episode {episode} has no step {step}")
    return InspectedState(found.game, found.state_key, found.embedding, f"step {rows[0]}:{step}", found.world_hash)


@dataclass
class ActionRow:
    """One action at the inspected state: n(a), Q̂, raw A = Q̂ − V̂, Ã, the prior multiplier exp(β·Ã), and whether
    n(a) and Q̂ came from similar states (``--backoff-states``) or from the action's back-off key (``--backoff-actions``)."""

    action: str
    count: int
    q: float | None
    advantage: float
    normalized: float
    bonus: bool
    weight: float
    backed_off: bool = False


@dataclass
class Inspection:
    """Neighbours and the per-action table at a state (``jitrl memory inspect --state/--step``)."""

    game: str
    state_key: str
    source: str
    neighbours: list[dict[str, Any]]
    value: float
    actions: list[ActionRow]
    params: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


def inspect_state(
    store: MemoryStore,
    state: InspectedState,
    *,
    k: int,
    min_similarity: float,
    beta: float,
    exploration: Exploration = Exploration.none,
    alpha: float = 1.0,
    extra_actions: list[str] | None = None,
    q_estimate: QEstimate = QEstimate.mean,
    returns: ReturnEstimate = ReturnEstimate.mc,
    gamma: float = 0.5,
    exact_match: bool = False,
    fill: bool = True,
    unseen_q: UnseenQ = UnseenQ.value,
    exact_all: bool = False,
    across_worlds: AcrossWorlds = AcrossWorlds.max,
    backoff_states: bool = False,
    backoff_actions: bool = False,
    avoid_deaths: bool = False,
    avoid_deaths_own: bool = False,
    avoid_deaths_horizon: int = 1,
) -> Inspection:
    """Retrieve N(s) and estimate A(s,a) as the agent does (paper §4.2, eqs. 4–6).

    The candidates are the neighbours' actions plus ``extra_actions``. ``paper``
    exploration is stochastic, so it is shown with λ = 1 (every unseen candidate
    gets its bonus α/|N|); ``ucb`` and ``none`` are what the agent computes. With
    ``returns=backup`` each neighbour's return is its backed-up value Q̂(s_t, a_t) over the
    remembered transitions, discounted by ``gamma`` (see :mod:`jitrl_cli.core.backup`). With
    ``exact_match`` and a state that has a world hash (a stored step), the steps of that
    identical state come first (all of them with ``exact_all``) and ANN neighbours fill the rest only with
    ``fill``, as in :func:`jitrl_cli.core.retrieval.retrieve_neighbourhood`. ``unseen_q`` starts the Q̂ of the candidates no
    neighbour took as ``play --unseen-q`` does. ``backoff_states`` (with exact match and a visited world
    state) also retrieves the similar states N'(s), adds their actions to the candidates and values the candidates
    this state never took by them, as ``play --backoff-states`` does. ``backoff_actions`` (web memories, whose actions
    are keys) values a candidate no neighbour took by the neighbours whose keys share its back-off key
    (:func:`adapters.web_observation.backoff_key`), as ``web --backoff-actions`` does. ``avoid_deaths`` (a text game's
    state key) values a candidate that this world state's steps never took, which killed in the state's situation
    (location and inventory), by all of that situation's steps of it, as ``play --avoid-deaths`` does;
    ``avoid_deaths_own`` (implies ``avoid_deaths``) does it for the candidates this world state took too, as
    ``play --avoid-deaths-own`` does, and ``avoid_deaths_horizon`` counts the last H steps of a death as deadly, as
    ``play --avoid-deaths-horizon`` does.
    """
    backed = backed_up_returns(store.transitions(state.game), gamma) if ReturnEstimate(returns) is ReturnEstimate.backup else None
    world = state.world_hash if exact_match else None
    steps, near = retrieve_neighbourhood(store, state.game, state.vector, k, min_similarity, world, returns=backed,
                                         fill=fill, similar=backoff_states, exact_all=exact_all)
    neighbours, similar = as_neighbours(steps), as_neighbours(near)
    rows = [{"id": h.id, "similarity": h.similarity, "action": h.action, "reward": h.reward, "return": h.ret,
             "episode": h.episode_id, "step": h.step, "state_key": h.state_key} for h in steps]
    candidates = list(dict.fromkeys([normalize_action(n.action) for n in neighbours + similar] +
                                    [normalize_action(a) for a in extra_actions or []]))
    situation = situation_of(state.state_key) if avoid_deaths or avoid_deaths_own else None
    own_world = None if avoid_deaths_own else state.world_hash
    deadly = as_neighbours(situation_deaths(store, state.game, situation, candidates, backed, own_world,
                                            avoid_deaths_horizon)) if situation else []
    est = estimate_advantages(candidates, neighbours, exploration=exploration, alpha=alpha, bonus_prob=1.0,
                              rng=np.random.default_rng(0), q_estimate=q_estimate, unseen_q=unseen_q, similar=similar,
                              backoff=backoff_key if backoff_actions else None, deadly=deadly,
                              deadly_mean=avoid_deaths_horizon > 1, across_worlds=across_worlds)
    actions = [
        ActionRow(a, int(est.counts[i]), None if np.isnan(est.q[i]) else float(est.q[i]), float(est.raw[i]),
                  float(est.normalized[i]), bool(est.bonus[i]), float(math.exp(beta * est.normalized[i])),
                  bool(est.backed_off[i]))
        for i, a in enumerate(candidates)
    ]
    actions.sort(key=lambda r: (-r.normalized, -r.count, r.action))
    return Inspection(state.game, state.state_key, state.source, rows, est.value, actions,
                      {"k": k, "min_similarity": min_similarity, "beta": beta,
                       "exploration": Exploration(exploration).value, "alpha": alpha,
                       "q_estimate": QEstimate(q_estimate).value, "across_worlds": AcrossWorlds(across_worlds).value,
                       "returns": ReturnEstimate(returns).value, "gamma": gamma,
                       "exact_match": world is not None, "exact_all": exact_all, "fill_neighbours": fill,
                       "unseen_q": UnseenQ(unseen_q).value,
                       "backoff_states": backoff_states, "backoff_actions": backoff_actions,
                       "avoid_deaths": avoid_deaths or avoid_deaths_own, "avoid_deaths_own": avoid_deaths_own,
                       "avoid_deaths_horizon": avoid_deaths_horizon})
