"""Value backup over the remembered transition graph: returns that share what other episodes learnt.

A stored step's Monte Carlo return G_t = Σ_u γ^{u−t} r_u (paper §3) only knows what
happened later in its own episode. That has two costs in a game with exact state
identities (Jericho's world-state hash):

* a detour inherits the rewards reached after it: in "east, west, (…), +25" the two
  useless moves get returns almost as high as the direct path, and with ``--q-estimate
  max`` a cycle can look as good as the way out of it;
* two episodes that reach the same state never combine: the best known continuation from
  a state is not credited to the steps that led there in other episodes.

The stored steps are an empirical model of the game: step t of an episode is a transition
(s_t, a_t, r_t, s_{t+1}), s_{t+1} being the state of the episode's next stored step.
Value iteration on that model (Bellman optimality equation, Sutton & Barto 2018 eq. 3.20;
algorithm §4.4) gives

    Q̂(s,a) = mean over the observed transitions from (s,a) of [ r + γ·V̂(s') ]
    V̂(s)   = max over the actions tried in s of Q̂(s,a)
    V̂(s')  = 0 after an episode's last step (terminal, or unknown after truncation)

and each stored step's return is replaced by Q̂(s_t, a_t). For γ < 1 the update is a
contraction and the sweeps converge; the mean over outcomes keeps a chancy action (a
fight, a grue in the dark) at its expected value. Steps without a world hash, or whose
successor has none, keep their Monte Carlo return.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import numpy as np

from jitrl_cli.core.advantage import normalize_action


class ReturnEstimate(str, Enum):
    """Which return a stored step contributes to Q̂ and V̂."""

    mc = "mc"
    backup = "backup"


def backed_up_returns(
    transitions: Sequence[tuple[int, int, str | None, str, float, float]],
    gamma: float,
    *,
    tolerance: float = 1e-6,
    max_sweeps: int = 2000,
) -> dict[int, float]:
    """Q̂(s_t, a_t) for every stored step, by value iteration over the remembered transitions.

    Args:
        transitions: rows (step id, episode id, world hash or None, action, reward r_t,
            Monte Carlo return G_t) in episode and step order, as
            :meth:`memories.store.MemoryStore.transitions` returns them. Actions are
            compared after :func:`jitrl_cli.core.advantage.normalize_action`.
        gamma: discount γ in [0, 1].
        tolerance: stop when no state value changes by more than this (score points).
        max_sweeps: upper bound on the sweeps (γ = 1 with a rewarding cycle never converges).

    Returns:
        step id → backed-up return (score points); steps without a world hash, or whose
        successor has none, map to their Monte Carlo return.

    Raises:
        ValueError: if gamma is outside [0, 1].
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    rows = list(transitions)
    out = {row[0]: row[5] for row in rows}
    states: dict[str, int] = {}
    pairs: dict[tuple[int, str], int] = {}
    edge_pair, edge_next, edge_reward, edge_ids = [], [], [], []
    for i, (step_id, episode_id, world, action, reward, _ret) in enumerate(rows):
        if not world:
            continue
        following = rows[i + 1] if i + 1 < len(rows) and rows[i + 1][1] == episode_id else None
        if following is not None and not following[2]:
            continue  # successor state unknown: keep the Monte Carlo return
        s = states.setdefault(world, len(states))
        nxt = -1 if following is None else states.setdefault(following[2], len(states))
        edge_pair.append(pairs.setdefault((s, normalize_action(action)), len(pairs)))
        edge_next.append(nxt)
        edge_reward.append(reward)
        edge_ids.append(step_id)
    if not edge_ids:
        return out
    pair_of = np.asarray(edge_pair, dtype=np.int64)
    nxt = np.asarray(edge_next, dtype=np.int64)
    reward = np.asarray(edge_reward, dtype=np.float64)
    pair_state = np.empty(len(pairs), dtype=np.int64)
    for (s, _a), p in pairs.items():
        pair_state[p] = s
    outcomes = np.bincount(pair_of, minlength=len(pairs)).astype(np.float64)
    has_next = nxt >= 0
    value = np.zeros(len(states) + 1)  # last slot: the value 0 after an episode's end
    nxt = np.where(has_next, nxt, len(states))
    q = np.zeros(len(pairs))
    for _ in range(max_sweeps):
        target = reward + gamma * value[nxt]
        q = np.bincount(pair_of, weights=target, minlength=len(pairs)) / outcomes
        new = np.full(len(states) + 1, -np.inf)
        np.maximum.at(new, pair_state, q)
        new[len(states)] = 0.0
        new[np.isneginf(new)] = 0.0  # a state whose only step was left out (successor without a hash)
        delta = float(np.max(np.abs(new - value)))
        value = new
        if delta <= tolerance:
            break
    for step_id, p in zip(edge_ids, pair_of):
        out[step_id] = float(q[p])
    return out
