"""Reflective step rewards from the real model: the evaluator's yes/no logits per step."""

import math

import numpy as np
import pytest

from jitrl_cli.core.reflection import StepEvaluator, Transition, combine, evaluator_prompt
from jitrl_cli.llm.scoring import CandidateScorer

KITCHEN = Transition("Behind House. The window is open.", "west",
                     "Kitchen. You are in the kitchen of the white house. A table seems to have been used recently.", 10)
WALL = Transition("Forest path.", "north", "You can't go that way.", 0)


@pytest.fixture(scope="module")
def evaluator(llm):
    scorer = CandidateScorer(llm)
    yield StepEvaluator(scorer, llm.tokenize)
    scorer.close()


def test_rewards_are_the_yes_no_logit_gap_of_the_real_model(llm, evaluator):
    rewards = evaluator.rewards([KITCHEN, WALL, KITCHEN])
    assert len(rewards) == 3 and all(-1 < r < 1 for r in rewards)
    assert rewards[0] == rewards[2]  # identical steps are judged once, identically
    # the scoring of points ranks above a refused move
    assert rewards[0] > rewards[1] + 0.3
    # r = 2σ(z_yes − z_no) − 1, checked against a direct score of the same prompt
    scorer = evaluator.scorer
    scorer.reset()
    z = scorer.score(llm.tokenize(evaluator_prompt(WALL), True), [llm.tokenize(" yes"), llm.tokenize(" no")]).logprobs
    assert rewards[1] == pytest.approx(2 / (1 + math.exp(-(z[0] - z[1]))) - 1, abs=1e-6)


def test_prompt_clips_long_observations_and_shows_the_score_change():
    long = Transition("x " * 1000, "take lamp", "Taken.", 10)
    text = evaluator_prompt(long)
    assert "Score change: +10" in text and "Command: take lamp" in text
    assert len(text) < len(evaluator_prompt(WALL)) + 420


def test_combine_modes():
    env, llm = [0.0, 10.0, -10.0], [0.5, 0.25, -1.0]
    assert combine(env, None, "env") == env
    assert combine(env, llm, "llm") == llm
    assert np.allclose(combine(env, llm, "both"), [0.5, 10.25, -11.0])
    with pytest.raises(ValueError):
        combine(env, llm[:2], "both")
    with pytest.raises(ValueError):
        combine(env, llm, "neither")
