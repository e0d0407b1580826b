"""The JitRL agent loop: environment → state → retrieval → advantage → logit update → action
→ reward → memory (paper Algorithm 1).

:meth:`Agent.run_episode` is the episode loop; each step is :meth:`Agent.decide` (observe → state key →
retrieve → estimate advantages → score the prior → logit update → act) and one ``env.step``; the
episode's bookkeeping of visited states is a :class:`CycleTracker`; at the episode's end
:meth:`Agent.assign_credit` turns the rewards into returns (paper §3) and :meth:`Agent.remember` writes
the steps to memory. The environment keeps the contract of :mod:`adapters.base` and its reward is used
as given; the death penalty is a reward wrapper (:class:`adapters.wrappers.DeathPenalty`).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np

from adapters.base import Environment
from adapters.state_key import situation_key
from adapters.wrappers import DeathPenalty, find_wrapper
from jitrl_cli.core.archive import best_prefix, build_archive, select_cell
from jitrl_cli.core.backup import ReturnEstimate, backed_up_returns
from jitrl_cli.core.config import AgentConfig
from jitrl_cli.core.advantage import AdvantageEstimate, Exploration, Neighbour, estimate_advantages, normalize_action
from jitrl_cli.llm.prompt import TranscriptPrompt
from jitrl_cli.core.reflection import StepEvaluator, StepRewards, Transition, combine
from jitrl_cli.core.retrieval import as_neighbours, retrieve_neighbourhood, situation_deaths
from jitrl_cli.core.returns import discounted_returns, novelty_rewards
from jitrl_cli.llm.backend import Scorer
from jitrl_cli.llm.scoring import Prior, ScoreResult
from jitrl_cli.core.update import choose_action, log_softmax, posterior_logits
from memories.embedding import Embedder
from memories.store import EpisodeRecord, MemoryStore, StepRecord


@dataclass
class CandidateView:
    """One candidate at one step: prior p, advantage Ã, posterior p'."""

    action: str
    prior_logit: float
    prior: float
    advantage: float
    raw_advantage: float
    q: float | None
    count: int
    bonus: bool
    posterior: float
    key: str | None = None  # what memory knows the action by, where it is not the action itself (web: action_key)
    backed_off: bool = False  # Q̂ and the count came from the key's back-off key (``backoff_actions``)


@dataclass
class StepLog:
    """Everything about one step (one JSONL row of --log-dir).

    ``score``/``new_score``: the game score before/after the step. ``reward``: while the episode runs,
    the reward ``env.step`` gave (shaped by the env's wrappers); once it is over, the reward that entered
    the returns (LLM and novelty rewards included, :meth:`Agent.assign_credit`), and ``ret`` its return G_t.
    ``timings``: seconds per stage of the step.
    """

    episode: int
    step: int
    observation: str
    location: str | None
    score: float
    max_score: float | None
    candidates: list[CandidateView]
    chosen: int
    action: str
    value: float
    neighbours: int
    reward: float = 0.0
    new_score: float = 0.0
    ret: float | None = None
    llm_reward: float | None = None
    tokens_evaluated: int = 0
    prompt_tokens_evaluated: int = 0
    candidate_tokens_evaluated: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    cross_task: float | None = None  # share of this step's neighbours from other tasks' episodes (None: none retrieved)
    valid_actions_timeout: bool = False  # the candidates are the fallback moves: the valid-action finder timed out
    replayed: bool = False  # the action was the best episode's, replayed (``replay_best``), not the posterior's draw

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict (candidates as a list of dicts)."""
        d = asdict(self)
        d["candidates"] = [asdict(c) for c in self.candidates]
        return d


@dataclass
class EpisodeResult:
    """Summary of one finished episode (one JSON object of --json)."""

    episode: int
    episode_id: int | None
    uuid: str
    game: str
    score: float
    max_score: float | None
    steps: int
    moves: int
    victory: bool
    died: bool
    initial_return: float
    retrieval_steps: int
    mean_neighbours: float
    tokens_evaluated: int
    tokens_evaluated_per_step: float
    prompt_tokens_evaluated: int
    candidate_tokens_evaluated: int
    seconds: float
    seconds_per_step_median: float
    seconds_per_step_mean: float
    timings_mean: dict[str, float]
    memory_write_seconds: float
    model: str
    params: dict[str, Any]
    memory_steps: int
    reflection_seconds: float = 0.0
    cross_task_fraction: float | None = None  # mean share of neighbours from other tasks, over steps that had any
    valid_actions_timeouts: int = 0  # steps whose candidates were the fallback moves (the valid-action finder timed out)
    replayed_steps: int = 0  # the episode's first steps that replayed a stored path (``replay_best``, ``go_explore``)
    cautious: bool = False  # played without exploration bonus and cycle avoidance (``cautious_after``)

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


class Observer(Protocol):
    """Receives progress of a run (the Rich live view, a JSONL logger, ...)."""

    def on_step(self, log: StepLog) -> None: ...

    def on_episode_end(self, result: EpisodeResult, logs: list[StepLog]) -> None: ...


class CycleTracker:
    """The running episode's visits: what UCB's pending counts and ``--avoid-cycles`` need.

    A *state* is the world-state hash (else the state key); a *place* is (state, score).

    Attributes:
        taken: state → normalised action → times it was taken there this episode (not yet in memory).
        visited: the places seen this episode.
        closing: place → normalised actions that led from it straight back into a visited place.
        previous: (place, normalised action) of the last step, None before the first.
    """

    def __init__(self) -> None:
        self.taken: defaultdict[str, Counter] = defaultdict(Counter)
        self.visited: set[tuple] = set()
        self.closing: defaultdict[tuple, set] = defaultdict(set)
        self.previous: tuple | None = None
        self._state: str | None = None
        self._place: tuple | None = None

    def arrive(self, state: str, score: float | None) -> None:
        """Enter ``state`` at ``score``; if that place was seen before, the last action closed a cycle."""
        place = (state, score)
        if place in self.visited and self.previous is not None:
            self.closing[self.previous[0]].add(self.previous[1])
        self.visited.add(place)
        self._state, self._place = state, place

    def pending_counts(self, candidates: list[str]) -> list[int]:
        """Length n: times each candidate was taken from the current state earlier this episode."""
        here = self.taken[self._state]
        return [here[normalize_action(a)] for a in candidates]

    def repeated(self, candidates: list[str]) -> list[bool]:
        """Length n: whether each candidate closed a cycle from the current place earlier this episode."""
        closed = self.closing.get(self._place, ())
        return [normalize_action(a) in closed for a in candidates]

    def leave(self, action: str) -> None:
        """Take ``action`` from the current place."""
        a = normalize_action(action)
        self.taken[self._state][a] += 1
        self.previous = (self._place, a)


@dataclass
class EpisodeContext:
    """What a running episode carries from step to step.

    Attributes:
        namespace: the memory namespace.
        rng: the episode's sampler, seeded by (config.seed, episode).
        use_memory: retrieve from and write to memory (learning on and a store given).
        backed: stored step id → backed-up return (``--returns backup``; empty otherwise).
        prompt: the transcript prompt of the episode.
        cycles: the episode's visits.
        timings: the setup's seconds (memory refresh/backup, env reset), reported with step 0.
    """

    namespace: str
    rng: np.random.Generator
    use_memory: bool
    backed: dict[int, float]
    prompt: TranscriptPrompt
    cycles: CycleTracker = field(default_factory=CycleTracker)
    timings: dict[str, float] = field(default_factory=dict)
    replay: list[tuple[str, str | None]] = field(default_factory=list)  # (action, world hash) still to replay
    task: str | None = None  # the environment's name (a game, a web task), recorded with the episode
    backoff: Callable[[str], str] | None = None  # the environment's back-off action key (``backoff_actions``)
    cautious: bool = False  # no exploration bonus, no cycle avoidance this episode (``cautious_after``)
    return_cell: str | None = None  # the archive cell the episode returns to first (``go_explore``)


@dataclass
class Decision:
    """The policy's decision at one step, before the environment answers.

    Attributes:
        candidates: the n distinct candidate actions C(s).
        key: the state key embedded (``info["state_key"]``); vector: its embedding, shape (d,).
        estimate: the advantages Ã(s,a) from the neighbours (paper §4.2, eqs. 4–6), arrays of shape (n,).
        scored: the LLM prior, ``scored.logprobs`` z of shape (n,) in nats.
        prior: p = softmax(z / T), shape (n,); posterior: p' = softmax(z / T + β·Ã) (paper eq. 7), shape (n,).
        chosen: index of the action taken; candidate_tokens: each candidate's scored tokens.
        timings: seconds per stage (retrieval, scoring, update; env_step and valid_actions added after the step).
    """

    candidates: list[str]
    key: str
    vector: np.ndarray
    estimate: AdvantageEstimate
    scored: ScoreResult
    prior: np.ndarray
    posterior: np.ndarray
    chosen: int
    candidate_tokens: list[list[int]]
    timings: dict[str, float]
    action_keys: list[str] | None = None  # per candidate, its key in memory (None: the candidates themselves)
    cross_task: float | None = None  # share of the neighbours retrieved from other tasks' episodes
    replayed: bool = False  # ``chosen`` is the best episode's action, replayed (``replay_best``), not the posterior's draw

    @property
    def action(self) -> str:
        """The chosen candidate."""
        return self.candidates[self.chosen]

    @property
    def memory_action(self) -> str:
        """What memory stores for the chosen action: its key (:attr:`action_keys`), else the action itself."""
        return self.action_keys[self.chosen] if self.action_keys else self.action

    def views(self) -> list[CandidateView]:
        """One :class:`CandidateView` per candidate."""
        est = self.estimate
        return [
            CandidateView(
                action=a,
                prior_logit=float(self.scored.logprobs[i]),
                prior=float(self.prior[i]),
                advantage=float(est.normalized[i]),
                raw_advantage=float(est.raw[i]),
                q=None if np.isnan(est.q[i]) else float(est.q[i]),
                count=int(est.counts[i]),
                bonus=bool(est.bonus[i]),
                key=self.action_keys[i] if self.action_keys else None,
                backed_off=bool(est.backed_off[i]) if len(est.backed_off) else False,
                posterior=float(self.posterior[i]),
            )
            for i, a in enumerate(self.candidates)
        ]


class Agent:
    """Plays episodes with the JitRL policy.

    Args:
        scorer: prior log-probabilities from the LLM.
        tokenize: the model's tokenizer, ``tokenize(text, add_bos)``.
        embedder: state-key embedder (must match the memory's).
        store: the experience memory (None: no memory at all).
        config: hyper-parameters.
        model_name: recorded with each episode.
        n_ctx: the model's context size (prompt budget = n_ctx − 512).
    """

    def __init__(
        self,
        scorer: Scorer,
        tokenize: Callable[[str, bool], list[int]],
        embedder: Embedder,
        store: MemoryStore | None,
        config: AgentConfig,
        model_name: str,
        n_ctx: int,
    ) -> None:
        self.scorer = scorer
        self.tokenize = tokenize
        self.embedder = embedder
        self.store = store
        self.config = config
        self.model_name = model_name
        self.n_ctx = n_ctx
        self.evaluator = StepEvaluator(scorer, tokenize)

    def run_episode(self, env: Environment, namespace: str, episode: int, header: str, observer: Observer | None = None) -> EpisodeResult:
        """Play one episode of at most ``config.max_steps`` steps and store it in memory.

        Args:
            env: the environment (reset here), keeping the contract of :mod:`adapters.base`; it gets
                this agent's reward wrappers (:meth:`with_reward_wrappers`).
            namespace: memory namespace (the game's name).
            episode: 1-based episode number within this run (seeds the sampler).
            header: first line of the transcript prompt.
            observer: progress receiver.

        Returns:
            the episode summary (also written to memory when learning).
        """
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        t_episode = time.perf_counter()
        env = self.with_reward_wrappers(env)
        ctx, obs, info = self.begin_episode(env, namespace, episode, header)
        # the episode's numbers depend on the episode alone, not on what was scored before; the header's KV stays
        self.scorer.reset(keep=ctx.prompt.head)
        logs: list[StepLog] = []
        records: list[StepRecord] = []
        rewards: list[float] = []
        terminated = truncated = False
        for t in range(self.config.max_steps):  # play: decide, step, log
            if not info["candidates"]:
                break
            decision = self.decide(ctx, obs, info, timings=ctx.timings if t == 0 else {})
            t0 = time.perf_counter()
            next_obs, reward, terminated, truncated, next_info = env.step(decision.action)
            valid_seconds = float(next_info["valid_actions_seconds"])
            decision.timings["env_step"] = time.perf_counter() - t0 - valid_seconds
            decision.timings["valid_actions"] = valid_seconds
            log = self.step_log(episode, t, obs, info, decision, reward, next_info)
            logs.append(log)
            records.append(StepRecord(step=t, state_key=decision.key, embedding=decision.vector, action=decision.memory_action,
                                      reward=0.0, ret=0.0, score=log.new_score, world_hash=info["state_hash"],
                                      observation=obs))
            rewards.append(reward)
            if observer is not None:
                observer.on_step(log)
            ctx.prompt.append(decision.candidate_tokens[decision.chosen], self.prompt_text(next_obs, next_info))
            obs, info = next_obs, next_info
            if terminated or truncated:
                break
        # learn: credit assignment (rewards → returns), then the memory write
        died = bool(info["game_over"]) and terminated
        returns, reflection_seconds = self.assign_credit(ctx, logs, records, rewards, obs, info, died=died)
        episode_id, run_id, params, write_seconds = self.remember(ctx, env, records, logs, info, started)
        result = self.summarize(
            episode, episode_id, run_id, namespace, logs, returns, info, died=died,
            seconds=time.perf_counter() - t_episode, write_seconds=write_seconds, params=params,
            reflection_seconds=reflection_seconds, cautious=ctx.cautious,
        )
        if observer is not None:
            observer.on_episode_end(result, logs)
        return result

    # -- the episode's parts, in the order the loop calls them ----------------------------------
    def with_reward_wrappers(self, env: Environment) -> Environment:
        """``env`` with this agent's reward shaping: :class:`adapters.wrappers.DeathPenalty` of
        ``config.death_penalty`` (none when it is 0).

        The agent wraps the environment itself because the penalty is a hyper-parameter of its config
        (recorded with each episode's params) while one environment is shared by the arms of an eval.
        An ``env`` that already has a :class:`DeathPenalty` is used as it is.

        Raises:
            ValueError: ``env``'s own :class:`DeathPenalty` has another penalty than the config's.
        """
        penalty = float(self.config.death_penalty)
        existing = find_wrapper(env, DeathPenalty)
        if existing is not None:
            if existing.penalty != penalty:
                raise ValueError(f"the environment's death penalty {existing.penalty:g} is not the config's {penalty:g}")
            return env
        return DeathPenalty(env, penalty) if penalty else env

    def prompt_text(self, obs: str, info: dict[str, Any]) -> str:
        """What the transcript shows of a state: the observation, and with ``prompt_inventory`` what the player
        carries (``info["inventory"]``), so the model need not remember it from far back in the transcript."""
        if self.config.prompt_inventory and info.get("inventory") is not None:
            return f"{obs.rstrip()}\n[carrying: {', '.join(info['inventory']) or 'nothing'}]"
        return obs

    def begin_episode(self, env: Environment, namespace: str, episode: int, header: str
                      ) -> tuple[EpisodeContext, str, dict[str, Any]]:
        """Set up an episode: its sampler, its view of memory (refreshed; the backed-up returns for
        ``--returns backup``), ``env.reset()`` and the prompt.

        Returns:
            (the episode's context, the first observation, its ``info``).
        """
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, episode])
        use_memory = cfg.learn and self.store is not None
        backed: dict[int, float] = {}
        t0 = time.perf_counter()
        if use_memory:
            self.store.refresh(namespace)
            if ReturnEstimate(cfg.returns) is ReturnEstimate.backup:
                backed = backed_up_returns(self.store.transitions(namespace), cfg.gamma)
        backup_seconds = time.perf_counter() - t0
        prompt = TranscriptPrompt(self.tokenize, header, max_tokens=max(256, self.n_ctx - 512), history=cfg.history)
        t0 = time.perf_counter()
        obs, info = env.reset()
        ctx = EpisodeContext(namespace, rng, use_memory, backed, prompt, timings={"env_reset": time.perf_counter() - t0})
        if backed:
            ctx.timings["backup"] = backup_seconds
        ctx.task = getattr(env, "name", None)
        if use_memory and cfg.cautious_after:  # exploring has met only deaths: keep to what memory knows survives
            ctx.cautious = (self.store.count_deaths(namespace) >= cfg.cautious_after
                            and not self.store.has_scored(namespace, start_score=info.get("score")))
        if cfg.abstract_actions and cfg.backoff_actions:
            ctx.backoff = getattr(env, "backoff_key", None)
        if use_memory and cfg.go_explore:  # Go-Explore's return: to a cell of the archive of the states memory reached
            cells = build_archive(self.store.trajectories(namespace), info["score"],
                                  self.store.episode_param_counts(namespace, "return_cell"))
            cell = select_cell(cells, info["max_score"], rng)
            if cell is not None:
                ctx.replay, ctx.return_cell = list(cell.path), cell.key
        elif use_memory and cfg.replay_best:
            # Go-Explore's return: to a state drawn uniformly along the best path (its frontier included), so
            # exploration also starts before a frontier that leads only to dead ends (zork1's dark cellar)
            path = best_prefix(self.store.best_episode_steps(namespace))
            ctx.replay = path[: int(rng.integers(1, len(path) + 1))] if path else []
        prompt.start(self.prompt_text(obs, info))
        return ctx, obs, info

    def decide(self, ctx: EpisodeContext, obs: str, info: dict[str, Any], timings: dict[str, float]) -> Decision:
        """One step of the policy (paper Algorithm 1, lines 3–8): state key → embedding → retrieval of the
        k nearest stored steps → LLM prior z → advantages Ã(s,a) (``--exploration puct`` weighs its bonus by the
        prior π = softmax(z/T)) → posterior z/T + β·Ã → sampled action.

        Args:
            ctx: the running episode (its rng, prompt and cycle tracker advance).
            obs, info: the current observation and ``info`` (:mod:`adapters.base`).
            timings: the step's timings so far (step 0: the setup's); filled in and returned in the decision.
        """
        cfg = self.config
        candidates = list(dict.fromkeys(info["candidates"]))
        match = candidates  # what memory knows the candidates by: their action keys where the adapter gives them
        if cfg.abstract_actions and info.get("action_keys"):
            key_of = dict(zip(info["candidates"], info["action_keys"]))
            match = [key_of.get(c, c) for c in candidates]
        t0 = time.perf_counter()
        key = info["state_key"]
        vector = self.embedder.embed(key)
        neighbours: list[Neighbour] = []
        similar: list[Neighbour] = []
        if ctx.use_memory:
            world = info["state_hash"] if cfg.exact_match else None
            # --backoff-states: also the neighbourhood N'(s), for what this world state never took
            steps, near = retrieve_neighbourhood(self.store, ctx.namespace, vector, cfg.k, cfg.min_similarity, world,
                                                 ctx.backed, cfg.fill_neighbours, similar=cfg.backoff_states,
                                                 exact_all=cfg.exact_all)
            neighbours, similar = as_neighbours(steps), as_neighbours(near)
        deadly: list[Neighbour] = []
        avoid_deaths = cfg.avoid_deaths or cfg.avoid_deaths_own
        if ctx.use_memory and avoid_deaths and info.get("location") is not None:  # text games: where and what it carries
            situation = situation_key(info["location"], info["inventory"])
            own_world = None if cfg.avoid_deaths_own else info["state_hash"]  # --avoid-deaths-own: no action is left to it
            deadly = as_neighbours(situation_deaths(self.store, ctx.namespace, situation, match, ctx.backed, own_world,
                                                    cfg.avoid_deaths_horizon))
        cross_task = None
        if neighbours and ctx.task is not None:  # the paper's cross-task share: neighbours from other tasks' episodes
            tasks = self.store.step_tasks(n.step_id for n in neighbours)
            cross_task = sum(1 for n in neighbours if tasks.get(n.step_id) not in (None, ctx.task)) / len(neighbours)
        timings["retrieval"] = time.perf_counter() - t0
        ctx.cycles.arrive(info["state_hash"] or key, info["score"])
        cand_tokens = [ctx.prompt.candidate_tokens(a) for a in candidates]
        scored = self.scorer.score(ctx.prompt.tokens(), cand_tokens, prior=Prior(cfg.prior))
        timings["scoring"] = scored.seconds
        t0 = time.perf_counter()
        prior_p = np.exp(log_softmax(scored.logprobs / cfg.temperature))
        avoid_cycles = cfg.avoid_cycles and not ctx.cautious
        est = estimate_advantages(
            match, neighbours, exploration=Exploration.none if ctx.cautious else cfg.exploration, alpha=cfg.alpha,
            bonus_prob=cfg.bonus_prob, rng=ctx.rng,
            q_estimate=cfg.q_estimate, pending_counts=ctx.cycles.pending_counts(candidates),
            repeated=ctx.cycles.repeated(candidates) if avoid_cycles else [False] * len(candidates),
            unseen_q=cfg.unseen_q, backoff=ctx.backoff if match is not candidates else None, prior=prior_p,
            similar=similar, deadly=deadly, deadly_mean=cfg.avoid_deaths_horizon > 1,
            safe_cycles=cfg.safe_cycles, across_worlds=cfg.across_worlds,
        )
        z_post = posterior_logits(scored.logprobs, est.normalized, self.config.effective_beta(), cfg.temperature)
        chosen = choose_action(z_post, ctx.rng, greedy=cfg.greedy)
        replayed = False
        if ctx.replay:  # phased exploration: follow the best episode while the world is the one it saw
            action, world = ctx.replay.pop(0)
            if action in candidates and (world is None or world == info["state_hash"]):
                chosen, replayed = candidates.index(action), True
            else:
                ctx.replay.clear()
        post_p = np.exp(log_softmax(z_post))
        timings["update"] = time.perf_counter() - t0
        ctx.cycles.leave(candidates[chosen])
        return Decision(candidates, key, vector, est, scored, prior_p, post_p, chosen, cand_tokens, timings,
                        match if match is not candidates else None, cross_task, replayed)

    @staticmethod
    def step_log(episode: int, t: int, obs: str, info: dict[str, Any], decision: Decision, reward: float,
                 next_info: dict[str, Any]) -> StepLog:
        """The :class:`StepLog` of step ``t``, with the reward ``env.step`` gave."""
        scored, est = decision.scored, decision.estimate
        return StepLog(
            episode=episode, step=t, observation=obs, location=info["location"], score=float(info["score"]),
            max_score=info["max_score"], candidates=decision.views(), chosen=decision.chosen, action=decision.action,
            value=est.value, neighbours=est.n_neighbours, reward=reward, new_score=float(next_info["score"]),
            tokens_evaluated=scored.tokens_evaluated, prompt_tokens_evaluated=scored.prompt_tokens_evaluated,
            candidate_tokens_evaluated=scored.candidate_tokens_evaluated, timings=decision.timings,
            cross_task=decision.cross_task, valid_actions_timeout=bool(info.get("valid_actions_timeout", False)),
            replayed=decision.replayed,
        )

    def assign_credit(self, ctx: EpisodeContext, logs: list[StepLog], records: list[StepRecord], env_rewards: list[float],
                      last_obs: str, last_info: dict[str, Any], *, died: bool = False) -> tuple[list[float], float]:
        """Rewards → returns → the steps' records and logs (paper §3: G_t = Σ_{u≥t} γ^{u−t} r_u, no reward substitution).

        r_t is the environment's reward (shaped by its wrappers), replaced by or summed with the LLM
        evaluator's step reward r^LLM_t ∈ [−1, 1] under ``--step-rewards llm``/``both`` (the evaluator is
        shown the step's score change), plus the novelty bonus scale/√(1 + n(s_{t+1})) under ``--novelty``
        (:func:`jitrl_cli.core.returns.novelty_rewards`; kept here, not in a wrapper: see :mod:`adapters.wrappers`).
        Evaluator and novelty need the memory (learning on). With ``--death-credit H`` an episode that ``died`` charges
        its last step's reward (the game's and the evaluator's, not its novelty bonus) to the returns of its last H steps
        only (:func:`jitrl_cli.core.returns.discounted_returns`).

        Args:
            ctx: the finished episode.
            logs, records: the T steps (their ``reward``/``ret`` and the logs' ``llm_reward`` are set here).
            env_rewards: length T, the rewards ``env.step`` gave (score points).
            last_obs, last_info: the observation and ``info`` after the last step.
            died: whether the episode ended in a game lost (not a victory, not the step limit).

        Returns:
            (the T returns G_t, seconds the evaluator took).
        """
        cfg = self.config
        llm_rewards = None
        t0 = time.perf_counter()
        if ctx.use_memory and StepRewards(cfg.step_rewards) is not StepRewards.env and logs:
            after = [log.observation for log in logs[1:]] + [last_obs]
            llm_rewards = self.evaluator.rewards(
                [Transition(log.observation, log.action, nxt, log.new_score - log.score) for log, nxt in zip(logs, after)]
            )
            for log, r in zip(logs, llm_rewards):
                log.llm_reward = r
        reflection_seconds = time.perf_counter() - t0
        rewards = combine(env_rewards, llm_rewards, cfg.step_rewards)
        final = rewards[-1] if rewards else None  # the last step's reward before any novelty bonus: what --death-credit confines
        if ctx.use_memory and cfg.novelty and records:
            next_states = [r.world_hash for r in records[1:]] + [last_info["state_hash"]]
            counts = self.store.world_hash_counts(ctx.namespace, next_states)
            rewards = [r + b for r, b in zip(rewards, novelty_rewards(next_states, counts, cfg.novelty))]
        returns = discounted_returns(rewards, cfg.gamma, final_credit=cfg.death_credit if died and cfg.death_credit else None,
                                     final_reward=final)
        for rec, log, r, g in zip(records, logs, rewards, returns):
            rec.reward, rec.ret = r, g
            log.reward, log.ret = r, g
        return returns, reflection_seconds

    def remember(self, ctx: EpisodeContext, env: Environment, records: list[StepRecord], logs: list[StepLog],
                 last_info: dict[str, Any], started: str) -> tuple[int | None, str, dict[str, Any], float]:
        """Write the episode to memory (when learning and it has steps).

        Returns:
            (the stored episode's id or None, the episode's uuid, its params, seconds the write took).
        """
        run_id = uuid.uuid4().hex
        params = self.config.to_params() | ({"task": ctx.task} if ctx.task else {})
        if ctx.return_cell is not None:
            params["return_cell"] = ctx.return_cell
        if env.state_hash_kind is not None:
            params["state_hash"] = env.state_hash_kind
        episode_id = None
        t0 = time.perf_counter()
        if ctx.use_memory and records:
            final_score = logs[-1].new_score
            episode_id = self.store.write_episode(
                EpisodeRecord(uuid=run_id, game=ctx.namespace, score=final_score, steps=len(records),
                              max_score=last_info["max_score"], model=self.model_name, params=params,
                              started_at=started),
                records,
            )
        return episode_id, run_id, params, time.perf_counter() - t0

    def summarize(self, episode: int, episode_id: int | None, run_id: str, namespace: str, logs: list[StepLog],
                  returns: list[float], last_info: dict[str, Any], *, died: bool, seconds: float,
                  write_seconds: float, params: dict[str, Any], reflection_seconds: float,
                  cautious: bool = False) -> EpisodeResult:
        """The :class:`EpisodeResult` of a finished episode (scores, counts, token and time statistics)."""
        step_seconds = [sum(log.timings.values()) for log in logs]
        keys = sorted({k for log in logs for k in log.timings})
        return EpisodeResult(
            episode=episode, episode_id=episode_id, uuid=run_id, game=namespace,
            score=logs[-1].new_score if logs else float(last_info["score"]),
            max_score=last_info["max_score"], steps=len(logs), moves=int(last_info["moves"]),
            victory=bool(last_info["victory"]), died=died, initial_return=returns[0] if returns else 0.0,
            retrieval_steps=sum(1 for log in logs if log.neighbours > 0),
            mean_neighbours=statistics.fmean([log.neighbours for log in logs]) if logs else 0.0,
            tokens_evaluated=sum(log.tokens_evaluated for log in logs),
            tokens_evaluated_per_step=statistics.fmean([log.tokens_evaluated for log in logs]) if logs else 0.0,
            prompt_tokens_evaluated=sum(log.prompt_tokens_evaluated for log in logs),
            candidate_tokens_evaluated=sum(log.candidate_tokens_evaluated for log in logs),
            seconds=seconds,
            seconds_per_step_median=statistics.median(step_seconds) if step_seconds else 0.0,
            seconds_per_step_mean=statistics.fmean(step_seconds) if step_seconds else 0.0,
            timings_mean={k: statistics.fmean([log.timings.get(k, 0.0) for log in logs]) for k in keys},
            memory_write_seconds=write_seconds, model=self.model_name, params=params,
            memory_steps=self.store.count_steps(namespace) if self.store is not None else 0,
            reflection_seconds=reflection_seconds,
            cross_task_fraction=(statistics.fmean(shares) if (shares := [log.cross_task for log in logs
                                                                          if log.cross_task is not None]) else None),
            valid_actions_timeouts=sum(log.valid_actions_timeout for log in logs),
            replayed_steps=sum(log.replayed for log in logs), cautious=cautious,
        )
