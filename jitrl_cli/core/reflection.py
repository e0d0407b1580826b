"""Reflective step-wise rewards: after an episode, an LLM evaluator scores each of its steps.

The paper asks an evaluator LLM, after each episode, how much every step contributed to
the task, and uses those step-wise rewards in the returns alongside (or instead of) the
environment's sparse reward. We ask the same local model with real token logits instead
of a verbalised number. For step t the evaluator prompt shows the observation before
the step, the action, the observation after it and the score change, then asks whether
the action made progress; the step reward is the evaluator's belief in "yes":

    r^LLM_t = p(yes) − p(no)  with p renormalised over {yes, no},  i.e.  2·σ(z_yes − z_no) − 1 ∈ [−1, 1]

Modes (``--step-rewards``): ``env`` uses the game's rewards only (the default),
``llm`` replaces them with r^LLM, ``both`` adds r^LLM to them (score points).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from jitrl_cli.llm.prompt import clean_for_prompt
from jitrl_cli.llm.backend import Scorer


class StepRewards(str, Enum):
    """Which rewards enter the returns."""

    env = "env"
    llm = "llm"
    both = "both"


#: the evaluator's instructions and two worked examples (one useful step, one useless)
EVALUATOR_HEADER = """You are judging the moves of a player in a text adventure game. For each move you see the \
situation before it, the command, what happened after it and the change of score. Answer yes if the move made \
progress (new place, useful item, puzzle solved, points), no if it was wasted (nothing happened, went back, \
refused, repeated, danger).

Before: You are in the kitchen. On the table is a brown sack. A dark staircase leads up.
Command: take sack
After: Taken.
Score change: +0
Progress? yes

Before: You are in the kitchen. On the table is a brown sack. A dark staircase leads up.
Command: jump
After: Wheeeeeeeeee!!!!!
Score change: +0
Progress? no
"""

MAX_OBSERVATION_CHARS = 400


@dataclass(frozen=True)
class Transition:
    """One step as the evaluator sees it: observation before, action, observation after, reward."""

    observation: str
    action: str
    next_observation: str
    reward: float


def _clip(text: str) -> str:
    text = " ".join(clean_for_prompt(text).split())
    return text if len(text) <= MAX_OBSERVATION_CHARS else text[: MAX_OBSERVATION_CHARS - 1] + "…"


def evaluator_prompt(step: Transition) -> str:
    """The evaluator prompt for one step (ends right before the answer token)."""
    return (f"{EVALUATOR_HEADER}\nBefore: {_clip(step.observation)}\nCommand: {step.action.strip()}\n"
            f"After: {_clip(step.next_observation)}\nScore change: {step.reward:+g}\nProgress?")


class StepEvaluator:
    """Scores the steps of a finished episode with the local model (the paper's reflective step-wise rewards).

    Args:
        scorer: the same scorer (:class:`jitrl_cli.llm.backend.Scorer`) that gives the prior (its prompt cache is
            reused: the evaluator header is evaluated once, then only each step's lines).
        tokenize: the model's tokenizer, ``tokenize(text, add_bos)``.
    """

    def __init__(self, scorer: Scorer, tokenize: Callable[[str, bool], list[int]]) -> None:
        self.scorer = scorer
        self.tokenize = tokenize
        self._answers = [tokenize(" yes", False), tokenize(" no", False)]
        self.seconds = 0.0

    def rewards(self, steps: Sequence[Transition]) -> list[float]:
        """r^LLM_t for every step, in [−1, 1] (identical steps are judged once).

        Args:
            steps: the episode's T transitions in order.

        Returns:
            length-T list of step rewards, 2·σ(z_yes − z_no) − 1.

        Raises:
            ValueError: if a prompt does not fit the model's context (observations are clipped
                to 400 characters, so only a tiny context can cause this).
        """
        t0 = time.perf_counter()
        judged: dict[Transition, float] = {}
        out = []
        for step in steps:
            if step not in judged:
                scored = self.scorer.score(self.tokenize(evaluator_prompt(step), True), self._answers)
                z_yes, z_no = scored.logprobs
                judged[step] = float(np.tanh((z_yes - z_no) / 2.0))  # = 2σ(z_yes − z_no) − 1
            out.append(judged[step])
        self.seconds += time.perf_counter() - t0
        return out


def combine(env_rewards: Sequence[float], llm_rewards: Sequence[float] | None, mode: StepRewards | str) -> list[float]:
    """The rewards that enter the returns for a ``--step-rewards`` mode.

    Args:
        env_rewards: length-T game rewards (score points, death penalty included).
        llm_rewards: length-T evaluator rewards in [−1, 1] (None only for ``env``).
        mode: ``env``, ``llm`` or ``both``.

    Returns:
        length-T rewards: env, llm, or their sum.

    Raises:
        ValueError: if the evaluator rewards are missing or of another length.
    """
    mode = StepRewards(mode)
    if mode is StepRewards.env:
        return [float(r) for r in env_rewards]
    if llm_rewards is None or len(llm_rewards) != len(env_rewards):
        raise ValueError("step-reward mode needs one evaluator reward per step")
    if mode is StepRewards.llm:
        return [float(r) for r in llm_rewards]
    return [float(e) + float(r) for e, r in zip(env_rewards, llm_rewards)]
