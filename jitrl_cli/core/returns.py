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


def discounted_returns(rewards: Sequence[float], gamma: float) -> list[float]:
    """Discounted returns G_t = Σ_{u≥t} γ^{u−t} r_u (Sutton & Barto eq. 3.8).

    Args:
        rewards: length-T sequence of rewards r_0..r_{T−1}.
        gamma: discount γ in [0, 1].

    Returns:
        length-T list of returns, computed backwards: G_t = r_t + γ·G_{t+1}, G_T = 0.

    Raises:
        ValueError: if gamma is outside [0, 1].
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    returns = [0.0] * len(rewards)
    future = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        future = float(rewards[t]) + gamma * future
        returns[t] = future
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
