"""Advantage estimation from retrieved neighbours (paper §4.2, eqs. 4–6).

Given the k nearest stored steps N(s) of the current state s, each with the
action it took and its discounted return G:

    V̂(s)   = mean_{n ∈ N(s)} G_n                                   (value)
    Q̂(s,a) = mean_{n ∈ N(s), a_n = a} G_n                          (action value)
    A(s,a) = Q̂(s,a) − V̂(s)                                          (advantage)

With ``q_estimate="max"`` the action value is the best return seen after the action,
Q̂(s,a) = max_{n ∈ N(s), a_n = a} G_n: the right estimate when the environment is
deterministic (a Jericho game with a fixed seed replays the same way), where the
best trajectory through (s, a) can simply be taken again; the mean would dilute
it with every later exploratory episode that took a and then wandered off.

With ``q_estimate="expectimax"`` (our addition) the max is taken over what the agent chose and the mean over
what chance chose, as in expectimax search (Michie 1966; Russell & Norvig, AIMA §5.5): the neighbours that took a
from the same world state w are grouped by the state s' their step led to (the next stored step's world hash, or
the end of the episode), and

    Q̂_w(s,a) = Σ_{s'} n(w,a,s')/n(w,a) · max_{n: w_n = w, a_n = a, s'_n = s'} G_n
    Q̂(s,a)   = max_w Q̂_w(s,a)

Where each (w, a) always led to the same s' (a deterministic game) this is the max. Where it did not (zork2's grue
strikes in the dark one time in a few: the same step from the same state once led on and once ended the game), the
best continuation after each outcome is weighted by how often that outcome happened, so a lucky survival no longer
hides the deaths. Steps whose successor is unknown (the last step of an episode cut at its step limit) tell
nothing about the transition and count only where no step of their (w, a) has a known successor; steps without a
world hash are each their own group.

Across world states (``across_worlds``, `--across-worlds`): the expectimax's outer max over w lets the agent choose
its world, which is right among one state's own steps (one w) but not where N(s) holds other world states: the ANN
neighbours standing in for a state never visited, or the similar states of back-off states. The agent is in none of
them; which one its state resembles is chance. With ``mean`` (our addition) those world states are weighted by their
steps, as chance outcomes:

    Q̂(s,a) = Σ_w n(w,a)/n(a) · Q̂_w(s,a)

so a move in zork2's dark that met the grue from one world state of the Dark Tunnel and survived from another is
valued by both, not by the survival alone. Among one world state's own steps both are the same.

A candidate never taken among the neighbours gets an exploration bonus:

    paper: Q̂(s,a) = V̂(s) + α/|N(s)|, applied with probability λ (else A = 0);
    ucb:   A(s,a) += α·sqrt(ln(|N(s)|+m+1) / (n(a)+m(a)+1)) for every candidate
           (deterministic; n(a) = neighbours that took a, m(a) = times a was already taken
           from this state earlier in the running episode, m = Σ m(a); untried actions get
           the most, so the agent stops looping between the same actions mid-episode);
    puct:  A(s,a) += α·π(a|s)·sqrt(|N(s)|+m) / (1+n(a)+m(a)) for every candidate, the prior-weighted
           bonus of PUCT (Silver et al. 2017, AlphaGo Zero, "Search algorithm"; Rosin 2011): the LLM prior
           π(a|s) decides which untried actions are worth a try, so an action the model all but rules out
           (π ≈ 0: "jump" on a bridge over a ravine) gets no bonus, where ``ucb`` gives every untried
           candidate the same, largest one and β·Ã then outweighs any prior;
    none:  A = 0 for unseen candidates.

The value of an unseen candidate (``unseen_q``): where the paper starts it (before any bonus) from Q̂ = V̂
(``value``: A = 0, the prior decides), jitrl offers three other starts:

    optimistic:  Q̂ = max(V̂(s), 0)   (our addition; optimistic initialisation, Sutton & Barto §2.6)
    zero:        Q̂ = 0              (our addition; the zero initialisation of tabular Q-learning)
    pessimistic: Q̂ = min(V̂(s), 0)   (our addition; the mirror of optimistic)

``optimistic`` values an unseen candidate at least as well as an episode in which nothing more happens
(return 0). Without it, wherever the remembered returns are negative (later deaths drag V̂ below 0), any
action tried once and found harmless (Q̂ = 0) outranks every untried one, and the agent stops exploring
exactly where its known trajectories end. On a state with a known good path (Q̂ ≫ 0) it changes nothing.

``zero`` is the same where V̂ < 0, and the opposite where V̂ > 0: an unseen candidate is then worth less than
the state's known actions on average. It is for states that are solved: where every neighbour took the same
winning action (V̂ = Q̂ = 1 on a MiniWoB++ page), ``value`` gives that action A = 0, the same as every
unknown button, and the paper's bonus (Q̂ = V̂ + α/|N|) even ranks the unknown buttons above it; with ``zero``
the winner keeps A = 0 and each unknown button gets A = −V̂ (+ α/|N| with the bonus). ``pessimistic`` is ``zero``
where V̂ > 0 and the paper's start where V̂ < 0: a failing state keeps the paper's exploration, and only a state
whose known actions win ranks the unknown ones below them. It is `jitrl web`'s default (click-button 15 of 15 in the
last 5 episodes against 12 of 15 with ``value``: bench/RESULTS.md, "Where an untried action starts").

Back-off keys (our addition, ``backoff``): a candidate that no neighbour took is valued from the neighbours
whose actions share its coarser key b(a) (web: the element's role without the instance's own names,
:func:`adapters.web_observation.backoff_key`), as a back-off n-gram model falls back to a shorter context:

    Q̂(s,a) = mean (or max)_{n ∈ N(s), b(a_n) = b(a)} G_n      where no n ∈ N(s) has a_n = a

Such a candidate counts as seen (no exploration bonus). Without it, a web page whose elements carry random
names offers only candidates never seen before in every instance, and the bonus goes to all of them alike.

Back-off states (our addition, ``similar``): with exact-match retrieval, N(s) holds the steps of this very world state, and
a candidate none of them took is valued by the steps of *similar* states (the ANN neighbours N'(s), the paper's
retrieval, §4.1) that took it, the same back-off one level up, from the state to its neighbourhood:

    Q̂(s,a) = mean (or max)_{n ∈ N'(s), a_n = a} G_n      where no n ∈ N(s) has a_n = a (nor its back-off key)

V̂(s) stays this state's own. Such a candidate counts as seen (no exploration bonus), so an action that killed in every
similar state ("jump" beside zork2's ravine, with other objects lying about) is not tried again for its bonus in
each new world state, and one that scored in a similar state is tried here first.

Deadly actions (our addition, ``deadly``, `--avoid-deaths`): a candidate that this very world state's steps never
took, and which ended an episode in a death from a state of the same situation S(s) (the location and what the
player carries; in a text game an action that killed there tends to kill again, whatever else differs in the world),
is valued by every step of the situation that took it, whatever N(s) says of it (the caller, which knows the world
states, passes only those steps):

    Q̂(s,a) = Σ_{s'} n(S,a,s')/n(S,a) · max_{n: S(n) = S(s), a_n = a, s'_n = s'} G_n      (expectimax and max)
    Q̂(s,a) = mean_{n: S(n) = S(s), a_n = a} G_n                                          (mean)

and counts as seen (no exploration bonus). The expectimax treats the situation's world states as chance, not as a
choice (the agent is in none of them): a death counts as often as it happened. Where N(s) holds only other world
states (a state never visited, whose ANN neighbours stand in), their max over world states hides the deaths behind
one lucky survival (zork2's grue strikes in the dark one time in a few; "northeast" from the Path Near Stream killed
in 8 of seed 0's 30 episodes), and a new world state's ANN neighbours often hold none of the situation's steps at all
(zork2's Foot Bridge after the wizard's visit: its long message makes the bridge's own steps dissimilar, cosine 0.23),
so "jump" there got the bonus of an untried action. With no neighbours at all (V̂ = 0), such a candidate still gets
A = Q̂ < 0. With `--avoid-deaths-own` the caller passes the candidates this world state's own steps took as well,
its own steps among them: the world-state hash holds no random seed, so five survivals of a move in zork's dark from
one world state do not make it safe where the same move from another world state of the situation met the grue.
With `--avoid-deaths-horizon` H > 1 a candidate is deadly where it was among the last H steps of an episode that died
(the move into a trap: zork2's dark Path Near Stream, where every move has met the grue), and it is valued by the mean
return of the situation's steps of it (``deadly_mean``): the death came after a later choice, so the expectimax's best
return per next state would credit the agent with the one later move that happened to survive the grue.

Finally Ã = A / max_a |A(s,a)| (paper §4.2, "normalised advantage"); all-zero stays zero.

Cycle avoidance (our addition, for deterministic games): a candidate marked ``repeated`` (earlier
in the running episode it led from this same world state, at the same score, straight back into
a state already visited: it closed a cycle with nothing gained) gets Ã = −1 whatever its Q̂, and
the other candidates are normalised among themselves. It thus ties with the fresh candidate of the
lowest advantage, if that one is at −1, and the prior chooses between the two; ranking it strictly
below every other candidate (Ã = −2) measured worse on zork1 (bench/RESULTS.md, "Cycle avoidance
below every candidate"). In a deterministic game, closing the cycle
again would repeat it; blocking only the closing action lets the agent walk the cycle once more
and try something new at its end. The max estimate's optimism otherwise locks the
agent into such cycles: each action of the cycle once began a good trajectory elsewhere.

Safe cycles (our addition, ``safe_cycles``, `--safe-cycles`): where every fresh candidate is a known loss (seen, with
Q̂(s,a) < 0: its remembered outcomes lose points on average, a death among them), cycle avoidance stands aside and
the closing candidates keep their own Ã. A cycle costs steps; a known loss costs points. A candidate no step took
(it has an exploration bonus, no Q̂ of its own) is not a known loss, so cycle avoidance still sends the agent to it.
Measured on zork2, zork1 and detective it does not lower zork2's deaths (bench/RESULTS.md, "`--safe-cycles`").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class QEstimate(str, Enum):
    """How Q̂(s,a) aggregates the returns of the neighbours that took a."""

    mean = "mean"
    max = "max"
    expectimax = "expectimax"


class UnseenQ(str, Enum):
    """Where the Q̂ of a candidate unseen among the neighbours starts, before any exploration bonus (module docstring)."""

    value = "value"
    optimistic = "optimistic"
    zero = "zero"
    pessimistic = "pessimistic"


class AcrossWorlds(str, Enum):
    """How the expectimax combines the neighbours of one action taken in different world states (module docstring)."""

    max = "max"
    mean = "mean"


class Exploration(str, Enum):
    """How candidates unseen among the neighbours are valued."""

    paper = "paper"
    ucb = "ucb"
    puct = "puct"
    none = "none"


@dataclass(frozen=True)
class Neighbour:
    """One retrieved past step: the action taken there and its discounted return.

    Attributes:
        action: the action text (compared after :func:`normalize_action`).
        ret: the discounted return G of that step (score points).
        similarity: cosine similarity of its state key to the query, in [−1, 1].
        step_id: the memory row id (for display and ``memory inspect``).
        world: the world-state hash of the state the step was taken in, or None.
        outcome: what the step led to: the next state's world hash or ``memories.store.TERMINAL``; None where
            unknown. ``world`` and ``outcome`` are read by ``q_estimate="expectimax"`` only.
    """

    action: str
    ret: float
    similarity: float = 1.0
    step_id: int = -1
    world: str | None = None
    outcome: str | None = None


@dataclass
class AdvantageEstimate:
    """Per-candidate statistics, arrays of shape (n_candidates,).

    Attributes:
        value: V̂(s), scalar (0.0 when there are no neighbours).
        q: Q̂(s,a) (NaN where the candidate is unseen and got no bonus).
        counts: n(a), how many neighbours took the candidate.
        raw: A(s,a) before normalisation, bonus included.
        normalized: Ã(s,a) = A / max|A|, in [−1, 1].
        bonus: whether the candidate got an exploration bonus.
        n_neighbours: |N(s)|.
        backed_off: whether Q̂ (and n(a)) came from the candidate's back-off key or from similar states
            (all False without either).
    """

    value: float
    q: np.ndarray
    counts: np.ndarray
    raw: np.ndarray
    normalized: np.ndarray
    bonus: np.ndarray
    n_neighbours: int
    backed_off: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


def normalize_action(action: str) -> str:
    """Canonical form used to match actions across steps: lower case, single spaces."""
    return " ".join(action.lower().split())


def estimate_advantages(
    candidates: Sequence[str],
    neighbours: Sequence[Neighbour],
    *,
    exploration: Exploration | str = Exploration.paper,
    alpha: float = 1.0,
    bonus_prob: float = 0.5,
    rng: np.random.Generator | None = None,
    q_estimate: QEstimate | str = QEstimate.mean,
    pending_counts: Sequence[int] | None = None,
    repeated: Sequence[bool] | None = None,
    unseen_q: UnseenQ | str = UnseenQ.value,
    backoff: Callable[[str], str] | None = None,
    prior: Sequence[float] | None = None,
    similar: Sequence[Neighbour] | None = None,
    deadly: Sequence[Neighbour] | None = None,
    deadly_mean: bool = False,
    safe_cycles: bool = False,
    across_worlds: AcrossWorlds | str = AcrossWorlds.max,
) -> AdvantageEstimate:
    """Estimate Ã(s,a) for every candidate from the neighbours' returns.

    Args:
        candidates: the candidate actions C(s), length n.
        neighbours: the retrieved steps N(s) (already filtered by similarity).
        exploration: ``paper`` (stochastic bonus α/|N| with probability λ), ``ucb``
            (deterministic count bonus), ``puct`` (count bonus weighted by the prior) or ``none``.
        alpha: α, the bonus scale (score points).
        bonus_prob: λ, the probability of applying the paper's bonus to an unseen candidate.
        rng: random generator for the paper's bonus (required only for ``paper``).
        q_estimate: ``mean`` (paper eq. 5), ``max`` (best return, for deterministic games) or ``expectimax``
            (max over the agent's choices, mean over chance outcomes; module docstring).
        pending_counts: length n, m(a): times each candidate was taken from this state
            earlier in the running episode (not yet in memory); used by ``ucb`` and ``puct`` only.
        repeated: length n, candidates that closed a cycle from this state earlier in the running
            episode; they get Ã = −1 and the others are normalised among themselves.
        unseen_q: where an unseen candidate's Q̂ starts: ``value`` (V̂, the paper), ``optimistic`` (max(V̂, 0)),
            ``zero`` (0) or ``pessimistic`` (min(V̂, 0)); see the module docstring.
        backoff: b(a), the coarser key a candidate that no neighbour took is valued by (module docstring);
            None: none.
        prior: length n, π(a|s), the prior policy's probabilities of the candidates (summing to 1); required
            by ``puct`` only.
        similar: N'(s), steps of similar states (not in ``neighbours``) that value the candidates no neighbour
            took (back-off states, module docstring); None or empty: none. Used only where ``neighbours`` is not empty.
        deadly: steps of this state's situation, of actions that died there (and, unless `--avoid-deaths-own`, that
            this world state's own steps never took; deadly actions, module docstring); they value their candidates
            instead of ``neighbours``, ``similar`` and the back-off keys; None or empty: none.
        deadly_mean: value the ``deadly`` candidates by the mean return of their steps, whatever ``q_estimate``: each
            step's whole continuation is chance (`--avoid-deaths-horizon` > 1, module docstring).
        safe_cycles: where every candidate not ``repeated`` is a known loss (seen, Q̂ < 0), the ``repeated`` ones
            are normalised with the others instead of getting Ã = −1 (safe cycles, module docstring).
        across_worlds: with ``expectimax``, ``max`` (the best world state's value) or ``mean`` (the world states'
            values weighted by their steps, as chance) over the world states among the neighbours that took an action
            (across worlds, module docstring); ``neighbours`` and ``similar`` alike.

    Returns:
        An :class:`AdvantageEstimate`; with no neighbours (and, for ``ucb`` and ``puct``, no earlier
        visit in this episode, and no ``deadly`` steps) every advantage is 0: the posterior equals the prior.

    Raises:
        ValueError: for an unknown exploration mode, Q estimate, unseen start or across-worlds rule, ``paper`` mode
            with λ > 0 and no rng, ``puct`` without a prior, or a prior of another length than n.
    """
    exploration = Exploration(exploration)
    unseen_q = UnseenQ(unseen_q)
    q_estimate = QEstimate(q_estimate)
    world_mean = AcrossWorlds(across_worlds) is AcrossWorlds.mean
    n = len(candidates)
    pending, repeated = _visit_marks(n, pending_counts, repeated)
    counted = exploration in (Exploration.ucb, Exploration.puct)
    if exploration is Exploration.puct:
        if prior is None:
            raise ValueError("the puct exploration bonus needs the prior's probabilities")
        prior = np.asarray(prior, dtype=np.float64)
        if prior.shape != (n,):
            raise ValueError(f"prior has shape {prior.shape}, expected ({n},)")
    q = np.full(n, np.nan)
    raw = np.zeros(n, dtype=np.float64)
    bonus = np.zeros(n, dtype=bool)
    revisited = (counted and pending.any()) or repeated.any()
    backed_off = np.zeros(n, dtype=bool)
    if n == 0 or not (neighbours or revisited or deadly):
        return AdvantageEstimate(0.0, q, np.zeros(n, dtype=np.int64), raw, raw.copy(), bonus, len(neighbours), backed_off)

    value = float(np.mean([nb.ret for nb in neighbours])) if neighbours else 0.0
    stats = _count_returns(candidates, neighbours, world_mean)
    if backoff is not None and neighbours and not stats[0].all():
        coarse = _count_returns([backoff(a) for a in candidates],
                                [dataclasses.replace(nb, action=backoff(nb.action)) for nb in neighbours], world_mean)
        stats, backed_off = _back_off(stats, coarse, backed_off)
    if similar and neighbours and not stats[0].all():
        stats, backed_off = _back_off(stats, _count_returns(candidates, similar, world_mean), backed_off)
    if deadly:  # one situation: its world states are chance, and Q̂ under max is its expectimax too
        # deadly_mean: every step its own outcome, so that the expectimax is the mean return
        chance = [dataclasses.replace(nb, world="", outcome=f"#{j}" if deadly_mean else nb.outcome)
                  for j, nb in enumerate(deadly)]
        counts, sums, _, expectimax = _count_returns(candidates, chance)
        took = counts > 0
        stats = tuple(np.where(took, b, a) for a, b in zip(stats, (counts, sums, expectimax, expectimax)))
        backed_off = backed_off | took
    counts, sums, maxima, expectimax = stats
    seen = counts > 0
    q[seen] = {QEstimate.max: maxima, QEstimate.expectimax: expectimax}.get(q_estimate, sums / np.maximum(counts, 1))[seen]
    raw[seen] = q[seen] - value
    # unseen candidates start from Q̂ = V̂ (A = 0), max(V̂, 0), 0 or min(V̂, 0): A = start − V̂
    start = {UnseenQ.value: value, UnseenQ.optimistic: max(value, 0.0), UnseenQ.zero: 0.0,
             UnseenQ.pessimistic: min(value, 0.0)}[unseen_q]
    raw[~seen] = start - value
    if start != value:
        q[~seen] = start
    n_nb = len(neighbours)
    if exploration is Exploration.paper and alpha > 0 and n_nb > 0:  # α/|N(s)|: no bonus without neighbours
        _paper_bonus(q, raw, bonus, np.flatnonzero(~seen), value, start, alpha, n_nb, bonus_prob, rng)
    elif counted and alpha > 0:
        visits = n_nb + int(pending.sum())
        if exploration is Exploration.ucb:
            raw = raw + alpha * np.sqrt(math.log(visits + 1) / (counts + pending + 1))
        else:
            raw = raw + alpha * prior * math.sqrt(visits) / (counts + pending + 1)
        bonus[:] = True
        q[~seen] = value + raw[~seen]
    fresh = ~repeated
    if safe_cycles and repeated.any() and fresh.any() and bool(np.all(seen[fresh] & (q[fresh] < 0))):
        repeated = np.zeros(n, dtype=bool)  # every fresh candidate is a known loss: the cycle is the safer way
    return AdvantageEstimate(value, q, counts, raw, _normalize(raw, repeated), bonus, n_nb, backed_off)


def _back_off(stats: tuple[np.ndarray, ...], fallback: tuple[np.ndarray, ...],
              backed_off: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Katz-style back-off of the per-candidate statistics (n(a), Σ G, max G, expectimax G; shape (n,) each, as
    :func:`_count_returns` gives them): a candidate with n(a) = 0 takes ``fallback``'s statistics where those
    counted any return. Returns the merged statistics and ``backed_off`` with those candidates marked."""
    took = (stats[0] == 0) & (fallback[0] > 0)
    return tuple(np.where(took, b, a) for a, b in zip(stats, fallback)), backed_off | took


def _paper_bonus(q: np.ndarray, raw: np.ndarray, bonus: np.ndarray, unseen: np.ndarray, value: float, start: float,
                 alpha: float, n_nb: int, bonus_prob: float, rng: np.random.Generator | None) -> None:
    """The paper's exploration bonus, in place: each unseen candidate (indices ``unseen``), with probability λ
    (one ``rng.random()`` draw per candidate, in order, unless λ ≥ 1 or λ = 0), gets Q̂ = start + α/|N(s)|
    (``start``: where the unseen candidates' Q̂ starts, :class:`UnseenQ`) and A = Q̂ − V̂.

    Raises:
        ValueError: λ > 0 and no rng.
    """
    if bonus_prob > 0 and rng is None:
        raise ValueError("the paper's exploration bonus needs a random generator")
    for i in unseen:
        if bonus_prob >= 1.0 or (bonus_prob > 0 and rng.random() < bonus_prob):
            q[i] = start + alpha / n_nb
            raw[i] = q[i] - value
            bonus[i] = True


def _normalize(raw: np.ndarray, repeated: np.ndarray) -> np.ndarray:
    """Ã = A / max|A| over the candidates not ``repeated`` (all zero when that max is 0); repeated ones get −1."""
    scale = float(np.max(np.abs(raw[~repeated]))) if (~repeated).any() else 0.0
    normalized = raw / scale if scale > 0 else np.zeros(len(raw))
    normalized[repeated] = -1.0
    return normalized


def _visit_marks(n: int, pending_counts: Sequence[int] | None,
                 repeated: Sequence[bool] | None) -> tuple[np.ndarray, np.ndarray]:
    """m(a) (int64) and the ``repeated`` flags (bool) as arrays of shape (n,), zeros/False when not given.

    Raises:
        ValueError: if either is given with another length than n.
    """
    pending = np.zeros(n, dtype=np.int64) if pending_counts is None else np.asarray(pending_counts, dtype=np.int64)
    marks = np.zeros(n, dtype=bool) if repeated is None else np.asarray(repeated, dtype=bool)
    if pending.shape != (n,) or marks.shape != (n,):
        raise ValueError(f"pending_counts/repeated have shapes {pending.shape}/{marks.shape}, expected ({n},)")
    return pending, marks


def _count_returns(candidates: Sequence[str], neighbours: Sequence[Neighbour],
                   world_mean: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate, over the neighbours that took it (actions compared by :func:`normalize_action`; equal
    candidates get the same statistics): n(a) (int64), the sum of their returns, their best return and their
    expectimax return (:func:`_expectimax`, ``world_mean`` passed on); shape (n,) each, −inf in the last two where
    none took it."""
    n = len(candidates)
    counts = np.zeros(n, dtype=np.int64)
    sums = np.zeros(n, dtype=np.float64)
    maxima = np.full(n, -np.inf)
    took: list[list[Neighbour]] = [[] for _ in range(n)]
    index: dict[str, list[int]] = {}
    for i, key in enumerate(normalize_action(a) for a in candidates):
        index.setdefault(key, []).append(i)  # candidates with the same (back-off) key share its statistics
    for nb in neighbours:
        for i in index.get(normalize_action(nb.action), ()):
            counts[i] += 1
            sums[i] += nb.ret
            maxima[i] = max(maxima[i], nb.ret)
            took[i].append(nb)
    expectimax = np.array([_expectimax(group, world_mean) if group else -np.inf for group in took], dtype=np.float64)
    return counts, sums, maxima, expectimax


def _expectimax(took: Sequence[Neighbour], world_mean: bool = False) -> float:
    """max over world states w (``world_mean``: their mean, weighted by the steps that counted) of the mean over
    outcomes s' of the best return (module docstring), for the neighbours that took one action (at least one).
    Steps with an unknown outcome count only in a world state where no step's outcome is known; steps without a
    world hash are each their own world state."""
    worlds: dict[object, list[Neighbour]] = {}
    for j, nb in enumerate(took):
        worlds.setdefault(nb.world if nb.world is not None else j, []).append(nb)
    values, weights = [], []
    for steps in worlds.values():
        outcomes: dict[str, list[float]] = {}
        for nb in steps:
            if nb.outcome is not None:
                outcomes.setdefault(nb.outcome, []).append(nb.ret)
        if outcomes:
            counted = sum(len(r) for r in outcomes.values())
            values.append(sum(len(r) * max(r) for r in outcomes.values()) / counted)
        else:
            counted = len(steps)
            values.append(max(nb.ret for nb in steps))
        weights.append(counted)
    if world_mean:
        return float(np.dot(values, weights) / sum(weights))
    return max(values)
