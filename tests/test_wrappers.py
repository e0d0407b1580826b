"""The environment contract of adapters/base.py and the reward wrappers, on the real zork1 engine (and one real
MiniWoB page in headless Chromium)."""

import json
import re

import pytest

from adapters.base import INFO_KEYS
from adapters.jericho_env import JerichoEnv
from adapters.state_key import build_state_key
from adapters.wrappers import DeathPenalty, Wrapper, find_wrapper

#: walk into the dark cellar without a light; then the grue eats the player within a few moves south
TO_THE_CELLAR = ["n", "e", "open window", "w", "w", "move rug", "open trap door", "d"]


@pytest.fixture(scope="module")
def env(zork1):
    e = JerichoEnv(zork1)
    yield e
    e.close()


def _check_info(obs, info):
    missing = [k for k in INFO_KEYS if k not in info]
    assert not missing, f"info lacks {missing}"
    assert isinstance(info["candidates"], list) and isinstance(info["inventory"], list)
    assert isinstance(info["score"], float) and isinstance(info["moves"], int)
    assert isinstance(info["victory"], bool) and isinstance(info["game_over"], bool)
    assert isinstance(info["valid_actions_seconds"], float) and info["valid_actions_seconds"] >= 0
    assert info["state_key"] == build_state_key(info["location"], info["inventory"], info["score"], obs)


def _play_to_death(env):
    """(rewards, infos) of the cellar walk and the moves south until the episode terminates."""
    obs, info = env.reset()
    _check_info(obs, info)
    rewards, infos = [], [info]
    for action in TO_THE_CELLAR + ["s"] * 10:
        obs, reward, terminated, truncated, info = env.step(action)
        _check_info(obs, info)
        rewards.append(reward)
        infos.append(info)
        assert not truncated
        if terminated:
            return rewards, infos
    raise AssertionError("the grue did not come")


def test_info_keys_and_state_key_at_reset_and_every_step(env):
    obs, info = env.reset()
    _check_info(obs, info)
    assert info["state_key"].startswith("location: west house | inventory: nothing | score: 0 | ")
    assert env.state_hash_kind == "jericho" and len(info["state_hash"]) == 32
    for action in ["open mailbox", "take leaflet", "north"]:
        obs, _, _, _, info = env.step(action)
        _check_info(obs, info)
    assert "inventory: leaflet" in info["state_key"]


def test_rewards_are_the_score_changes_as_given_by_step(env):
    _, info = env.reset()
    score = info["score"]
    for action in env.walkthrough()[:9]:  # the egg (+5), then the kitchen (+10)
        _, reward, _, _, info = env.step(action)
        assert reward == info["score"] - score
        score = info["score"]
    assert score == 15


def test_death_penalty_is_subtracted_exactly_once_on_a_real_death(env):
    raw, infos = _play_to_death(env)
    shaped, shaped_infos = _play_to_death(DeathPenalty(env, 10))
    assert [i["score"] for i in shaped_infos] == [i["score"] for i in infos]  # the same deterministic game
    last = infos[-1]
    assert last["game_over"] and not last["victory"] and last["candidates"] == []
    assert raw == [b["score"] - a["score"] for a, b in zip(infos, infos[1:])]  # unshaped: score changes
    assert shaped[:-1] == raw[:-1] and shaped[-1] == raw[-1] - 10  # only the losing step pays, once
    assert sum(s != r for s, r in zip(shaped, raw)) == 1


def test_death_penalty_leaves_other_steps_alone(env):
    wrapped = DeathPenalty(env, 10)
    _, info = wrapped.reset()
    score = info["score"]
    for action in env.walkthrough()[:9]:  # points scored, no death: rewards pass unchanged
        _, reward, terminated, _, info = wrapped.step(action)
        assert reward == info["score"] - score and not terminated
        score = info["score"]
    assert score == 15


def test_wrapper_forwards_the_environment(env):
    wrapped = DeathPenalty(DeathPenalty(env, 0), 3)
    assert wrapped.name == env.name == "zork1" and wrapped.state_hash_kind == "jericho"
    assert wrapped.walkthrough() == env.walkthrough()
    assert wrapped.unwrapped is env and isinstance(wrapped, Wrapper)
    assert find_wrapper(wrapped, DeathPenalty).penalty == 3 and find_wrapper(env, DeathPenalty) is None
    obs, info = wrapped.reset()
    assert "West of House" in obs and info["candidates"]
    with pytest.raises(ValueError, match="death penalty"):
        DeathPenalty(env, -1)


@pytest.mark.slow
def test_the_agent_wraps_its_death_penalty_once(env, llm):
    import dataclasses

    from jitrl_cli.core.agent import Agent
    from jitrl_cli.core.config import AgentConfig
    from jitrl_cli.llm.scoring import CandidateScorer
    from memories.embedding import get_embedder

    scorer = CandidateScorer(llm)
    try:
        agent = Agent(scorer, llm.tokenize, get_embedder(), None, AgentConfig(death_penalty=4.0), llm.name, llm.n_ctx)
        wrapped = agent.with_reward_wrappers(env)
        assert isinstance(wrapped, DeathPenalty) and wrapped.penalty == 4.0 and wrapped.env is env
        assert agent.with_reward_wrappers(wrapped) is wrapped  # already shaped: not twice
        with pytest.raises(ValueError, match="death penalty 3 is not the config's 4"):
            agent.with_reward_wrappers(DeathPenalty(env, 3))
        agent.config = dataclasses.replace(agent.config, death_penalty=0.0)
        assert agent.with_reward_wrappers(env) is env  # --death-penalty 0 (web tasks): no wrapper
    finally:
        scorer.close()


def test_miniwob_keeps_the_same_contract():
    from adapters.browser import Browser
    from adapters.miniwob_env import MiniWoBEnv

    browser = Browser()
    env = MiniWoBEnv("click-button", browser, seed=0)
    try:
        obs, info = env.reset()
        assert all(k in info for k in INFO_KEYS) and info["state_key"] and info["candidates"]
        assert env.state_hash_kind is None and info["valid_actions_seconds"] == 0.0
        target = next(c for c in info["candidates"] if c.startswith("click") and c.endswith(json.dumps(quoted(info["goal"]))))
        obs, reward, terminated, truncated, info = DeathPenalty(env, 10).step(target)
        assert all(k in info for k in INFO_KEYS) and terminated and not truncated
        assert reward == info["score"] == 1.0 and info["victory"] and not info["game_over"]  # never a death: no penalty
    finally:
        env.close()
        browser.close()


def quoted(goal: str) -> str:
    return re.search(r'"([^"]+)"', goal).group(1)
