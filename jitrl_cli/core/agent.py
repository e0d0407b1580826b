"""The JitRL agent loop: environment → state → retrieval → advantage → logit update → action
→ reward → memory (paper Algorithm 1)."""

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
from jitrl_cli.core.backup import ReturnEstimate, backed_up_returns
from jitrl_cli.core.config import AgentConfig
from jitrl_cli.core.advantage import Exploration, Neighbour, QEstimate, estimate_advantages, normalize_action
from jitrl_cli.llm.prompt import TranscriptPrompt
from jitrl_cli.core.reflection import StepEvaluator, StepRewards, Transition, combine
from jitrl_cli.core.retrieval import retrieve
from jitrl_cli.core.returns import discounted_returns, novelty_rewards, step_rewards
from jitrl_cli.llm.scoring import CandidateScorer, Prior
from jitrl_cli.core.state_key import build_state_key
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


@dataclass
class StepLog:
    """Everything about one step (one JSONL row of --log-dir)."""

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

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


class Observer(Protocol):
    """Receives progress of a run (the Rich live view, a JSONL logger, ...)."""

    def on_step(self, log: StepLog) -> None: ...

    def on_episode_end(self, result: EpisodeResult, logs: list[StepLog]) -> None: ...


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
        scorer: CandidateScorer,
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
            env: the environment (reset here).
            namespace: memory namespace (the game's name).
            episode: 1-based episode number within this run (seeds the sampler).
            header: first line of the transcript prompt.
            observer: progress receiver.

        Returns:
            the episode summary (also written to memory when learning).
        """
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, episode])
        beta = cfg.effective_beta()
        use_memory = cfg.learn and self.store is not None
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        t_episode = time.perf_counter()
        backed: dict[int, float] = {}
        t0 = time.perf_counter()
        if use_memory:
            self.store.refresh(namespace)
            if ReturnEstimate(cfg.returns) is ReturnEstimate.backup:
                backed = backed_up_returns(self.store.transitions(namespace), cfg.gamma)
        backup_seconds = time.perf_counter() - t0
        prompt = TranscriptPrompt(self.tokenize, header, max_tokens=max(256, self.n_ctx - 512))
        t0 = time.perf_counter()
        obs, info = env.reset()
        reset_seconds = time.perf_counter() - t0
        prompt.start(obs)
        initial_score = float(info.get("score", 0.0))
        logs: list[StepLog] = []
        records: list[StepRecord] = []
        scores: list[float] = []
        taken: defaultdict[str, Counter] = defaultdict(Counter)  # state → actions taken there this episode
        # cycle avoidance: (state, score) pairs seen this episode, and per pair the actions that led from it
        # straight back into one of them
        visited: set[tuple] = set()
        closing: defaultdict[tuple, set] = defaultdict(set)
        previous: tuple | None = None  # (state, score) and action of the last step
        terminated = truncated = False
        for t in range(cfg.max_steps):
            candidates = list(dict.fromkeys(info.get("candidates") or []))
            if not candidates:
                break
            timings: dict[str, float] = {}
            if t == 0:
                timings["env_reset"] = reset_seconds
                if backed:
                    timings["backup"] = backup_seconds
            # state -> key -> embedding
            t0 = time.perf_counter()
            key = info.get("state_key") or build_state_key(info.get("location"), info.get("inventory", []), info.get("score"), obs)
            vector = self.embedder.embed(key)
            # retrieval
            neighbours: list[Neighbour] = []
            if use_memory:
                world = info.get("state_hash") if cfg.exact_match else None
                neighbours = retrieve(self.store, namespace, vector, cfg.k, cfg.min_similarity, world, backed,
                                      cfg.fill_neighbours)
            timings["retrieval"] = time.perf_counter() - t0
            # advantage
            state = info.get("state_hash") or key
            here = taken[state]
            now = (state, info.get("score"))
            if now in visited and previous is not None:
                closing[previous[0]].add(previous[1])
            visited.add(now)
            est = estimate_advantages(
                candidates, neighbours, exploration=cfg.exploration, alpha=cfg.alpha, bonus_prob=cfg.bonus_prob, rng=rng,
                q_estimate=cfg.q_estimate, pending_counts=[here[normalize_action(a)] for a in candidates],
                repeated=[cfg.avoid_cycles and normalize_action(a) in closing.get(now, ()) for a in candidates],
                optimistic=cfg.optimistic,
            )
            # prior from the LLM
            cand_tokens = [prompt.candidate_tokens(a) for a in candidates]
            scored = self.scorer.score(prompt.tokens(), cand_tokens, prior=Prior(cfg.prior))
            timings["scoring"] = scored.seconds
            # logit update and action
            t0 = time.perf_counter()
            z_post = posterior_logits(scored.logprobs, est.normalized, beta, cfg.temperature)
            chosen = choose_action(z_post, rng, greedy=cfg.greedy)
            prior_p = np.exp(log_softmax(scored.logprobs / cfg.temperature))
            post_p = np.exp(log_softmax(z_post))
            timings["update"] = time.perf_counter() - t0
            action = candidates[chosen]
            here[normalize_action(action)] += 1
            previous = (now, normalize_action(action))
            # environment step
            t0 = time.perf_counter()
            next_obs, _reward, terminated, truncated, next_info = env.step(action)
            valid_seconds = float(next_info.get("valid_actions_seconds", 0.0))
            timings["env_step"] = time.perf_counter() - t0 - valid_seconds
            timings["valid_actions"] = valid_seconds
            views = [
                CandidateView(
                    action=a,
                    prior_logit=float(scored.logprobs[i]),
                    prior=float(prior_p[i]),
                    advantage=float(est.normalized[i]),
                    raw_advantage=float(est.raw[i]),
                    q=None if np.isnan(est.q[i]) else float(est.q[i]),
                    count=int(est.counts[i]),
                    bonus=bool(est.bonus[i]),
                    posterior=float(post_p[i]),
                )
                for i, a in enumerate(candidates)
            ]
            new_score = float(next_info.get("score", 0.0))
            log = StepLog(
                episode=episode, step=t, observation=obs, location=info.get("location"),
                score=float(info.get("score", 0.0)), max_score=info.get("max_score"), candidates=views,
                chosen=chosen, action=action, value=est.value, neighbours=est.n_neighbours,
                reward=new_score - float(info.get("score", 0.0)), new_score=new_score,
                tokens_evaluated=scored.tokens_evaluated, prompt_tokens_evaluated=scored.prompt_tokens_evaluated,
                candidate_tokens_evaluated=scored.candidate_tokens_evaluated, timings=timings,
            )
            logs.append(log)
            records.append(
                StepRecord(step=t, state_key=key, embedding=vector, action=action, reward=0.0, ret=0.0,
                           score=new_score, world_hash=info.get("state_hash"), observation=obs)
            )
            scores.append(new_score)
            if observer is not None:
                observer.on_step(log)
            prompt.append(cand_tokens[chosen], next_obs)
            obs, info = next_obs, next_info
            if terminated or truncated:
                break
        # rewards and returns (paper §3: G_t = Σ γ^{u−t} r_u; no reward substitution)
        died = bool(info.get("game_over")) and terminated
        rewards = step_rewards(scores, initial_score=initial_score, died=died, death_penalty=cfg.death_penalty)
        llm_rewards = None
        t0 = time.perf_counter()
        if use_memory and StepRewards(cfg.step_rewards) is not StepRewards.env and logs:
            after = [l.observation for l in logs[1:]] + [obs]
            llm_rewards = self.evaluator.rewards(
                [Transition(l.observation, l.action, nxt, l.reward) for l, nxt in zip(logs, after)]
            )
            for log, r in zip(logs, llm_rewards):
                log.llm_reward = r
        reflection_seconds = time.perf_counter() - t0
        rewards = combine(rewards, llm_rewards, cfg.step_rewards)
        if use_memory and cfg.novelty and records:
            next_states = [r.world_hash for r in records[1:]] + [info.get("state_hash")]
            counts = self.store.world_hash_counts(namespace, next_states)
            rewards = [r + b for r, b in zip(rewards, novelty_rewards(next_states, counts, cfg.novelty))]
        returns = discounted_returns(rewards, cfg.gamma)
        for rec, log, r, g in zip(records, logs, rewards, returns):
            rec.reward, rec.ret = r, g
            log.reward, log.ret = r, g
        final_score = scores[-1] if scores else initial_score
        run_id = uuid.uuid4().hex
        params = cfg.to_params()
        hash_kind = getattr(getattr(env, "state_hash", None), "value", None)  # a Jericho game's world-state key
        if hash_kind is not None:
            params["state_hash"] = hash_kind
        episode_id = None
        t0 = time.perf_counter()
        if use_memory and records:
            episode_id = self.store.write_episode(
                EpisodeRecord(uuid=run_id, game=namespace, score=final_score, steps=len(records),
                              max_score=info.get("max_score"), model=self.model_name, params=params,
                              started_at=started),
                records,
            )
        write_seconds = time.perf_counter() - t0
        step_seconds = [sum(l.timings.values()) for l in logs]
        keys = sorted({k for l in logs for k in l.timings})
        result = EpisodeResult(
            episode=episode, episode_id=episode_id, uuid=run_id, game=namespace, score=final_score,
            max_score=info.get("max_score"), steps=len(logs), moves=int(info.get("moves", len(logs))),
            victory=bool(info.get("victory")), died=died, initial_return=returns[0] if returns else 0.0,
            retrieval_steps=sum(1 for l in logs if l.neighbours > 0),
            mean_neighbours=statistics.fmean([l.neighbours for l in logs]) if logs else 0.0,
            tokens_evaluated=sum(l.tokens_evaluated for l in logs),
            tokens_evaluated_per_step=statistics.fmean([l.tokens_evaluated for l in logs]) if logs else 0.0,
            prompt_tokens_evaluated=sum(l.prompt_tokens_evaluated for l in logs),
            candidate_tokens_evaluated=sum(l.candidate_tokens_evaluated for l in logs),
            seconds=time.perf_counter() - t_episode,
            seconds_per_step_median=statistics.median(step_seconds) if step_seconds else 0.0,
            seconds_per_step_mean=statistics.fmean(step_seconds) if step_seconds else 0.0,
            timings_mean={k: statistics.fmean([l.timings.get(k, 0.0) for l in logs]) for k in keys},
            memory_write_seconds=write_seconds, model=self.model_name, params=params,
            memory_steps=self.store.count_steps(namespace) if self.store is not None else 0,
            reflection_seconds=reflection_seconds,
        )
        if observer is not None:
            observer.on_episode_end(result, logs)
        return result
