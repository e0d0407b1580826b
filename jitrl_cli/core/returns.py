"""Rewards and discounted returns of an episode (paper §3, step 5 of the loop).

The reference implementation of the paper replaces zero future rewards with the
current step's score; we compute the textbook return instead.

The agent takes each step's reward as ``env.step`` gives it (a game's score change, the death
penalty added by :class:`adapters.wrappers.DeathPenalty`); :func:`step_rewards` computes the same
rewards from a list of scores (scripted memories, tests). :func:`novelty_rewards` is added in the
agent's credit assignment (:meth:`jitrl_cli.core.agent.Agent.assign_credit`).
"""

from __future__ import annotations

from collections.abc import Sequence


def step_rewards(
    scores: Sequence[float],
    *,
    initial_score: float = 0.0,
    died: bool = False,
    death_penalty: float = 10.0,
) -> list[float]:
    """Per-step rewards r_t from the game score after each step: what a game adapter's ``env.step``
    gives, wrapped in :class:`adapters.wrappers.DeathPenalty` when ``died`` is scored.

    Args:
        scores: length-T sequence, the score after step t (t = 0..T-1).
        initial_score: the score before the first step.
        died: whether the episode ended in a game over that was not a victory.
        death_penalty: subtracted (as a positive number) from the last reward when ``died``.

    Returns:
        length-T list, r_t = score_t − score_{t−1} (− death_penalty on the last step if died).
    """
    rewards: list[float] = []
    previous = float(initial_score)
    for score in scores:
        rewards.append(float(score) - previous)
        previous = float(score)
    if died and rewards:
        rewards[-1] -= float(death_penalty)
    return rewards


def discounted_returns(rewards: Sequence[float], gamma: float, *, final_credit: int | None = None,
                       final_reward: float | None = None) -> list[float]:
    """Discounted returns G_t = Σ_{u≥t} γ^{u−t} r_u (Sutton & Barto eq. 3.8).

    With ``final_credit`` H (our addition, `--death-credit`, for an episode that ended in a death): the death's reward
    d (``final_reward``, part of the last reward r_{T−1}: the points lost and the death penalty) enters only the returns
    of the last H steps,

        G_t = Σ_{u≥t} γ^{u−t} r_u − [t < T−H]·γ^{T−1−t}·d,

    so a death is charged to the moves that led into it, not to every move of the episode: with γ 0.95 a death 20
    steps later still weighs about 0.36 of itself, and under Q̂ = max one such episode fixes the value of a move
    (zork1's way to the kitchen, tried once in an episode that died in the attic 20 steps on).

    Args:
        rewards: length-T sequence of rewards r_0..r_{T−1}.
        gamma: discount γ in [0, 1].
        final_credit: H ≥ 1, or None: every step's return holds the last reward.
        final_reward: d, the part of r_{T−1} that ``final_credit`` confines (score points); None: all of r_{T−1}. The
            rest of r_{T−1} (a novelty bonus for the step's new state) counts in every return as any reward does.

    Returns:
        length-T list of returns, computed backwards: G_t = r_t + γ·G_{t+1}, G_T = 0 (less the death's share where
        ``final_credit`` says so).

    Raises:
        ValueError: if gamma is outside [0, 1] or ``final_credit`` is below 1.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if final_credit is not None and final_credit < 1:
        raise ValueError(f"final_credit must be at least 1, got {final_credit}")
    n = len(rewards)
    returns = [0.0] * n
    last = float(rewards[-1] if final_reward is None else final_reward) if n else 0.0
    future = without_last = 0.0  # G_t, and G_t of the same rewards with d taken from r_{T−1}
    for t in range(n - 1, -1, -1):
        future = float(rewards[t]) + gamma * future
        without_last = float(rewards[t]) - (last if t == n - 1 else 0.0) + gamma * without_last
        returns[t] = without_last if final_credit is not None and t < n - final_credit else future
    return returns


def novelty_rewards(next_states: Sequence[str | None], stored_counts: dict[str, int], scale: float) -> list[float]:
    """Count-based exploration rewards r⁺_t = scale / sqrt(1 + n(s_{t+1})) (Strehl & Littman 2008, MBIE-EB).

    n(s) counts the visits of world state s before step t reaches it: the stored
    steps taken in s (``stored_counts``) plus earlier visits in this episode. A step
    into a never-seen state earns ``scale``; a step into a state seen m times earns
    scale/sqrt(1+m). States without a hash earn nothing.

    Args:
        next_states: length-T world-state hashes of s_1..s_T (the state each step led to).
        stored_counts: world hash → number of stored steps taken in that state.
        scale: bonus for a new state (score points); 0 disables the bonus.

    Returns:
        length-T list of bonuses, added to the step rewards (after the LLM evaluator's, see
        :meth:`jitrl_cli.core.agent.Agent.assign_credit`) before the returns are computed. Not an
        environment wrapper: the counts are the agent's memory's (:mod:`adapters.wrappers` says why).
    """
    seen: dict[str, int] = {}
    out = []
    for h in next_states:
        if not h or scale == 0:
            out.append(0.0)
            continue
        n = stored_counts.get(h, 0) + seen.get(h, 0)
        out.append(float(scale) / (1.0 + n) ** 0.5)
        seen[h] = seen.get(h, 0) + 1
    return out
