"""`--paper`: the paper's settings for every learning option not given on the command line."""

from __future__ import annotations

import json

import pytest

from jitrl_cli.core.config import PAPER_SETTINGS
from tests.conftest import run_cli


@pytest.mark.slow
def test_paper_sets_what_was_not_given(tmp_path):
    result = run_cli("play", "zork1", "--paper", "--beta", "5", "-n", "1", "--max-steps", "2", "--json",
                     "--memory", str(tmp_path / "memory"))
    assert result.returncode == 0, result.stderr
    params = json.loads(result.stdout)["params"]
    assert params["beta"] == 5.0  # given: kept
    for name, value in PAPER_SETTINGS.items():
        if name != "beta":
            assert params[name] == value, name
    assert params["alpha"] == 5.0 and params["bonus_prob"] == 0.65 and params["q_estimate"] == "mean"


def test_paper_settings_land_in_an_evals_run_file(tmp_path):
    out = tmp_path / "eval"
    result = run_cli("eval", "zork1", "--paper", "--episodes", "1", "--max-steps", "1", "--seeds", "1",
                     "--arms", "static", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["gamma"] == 0.5 and run["alpha"] == 5.0 and run["exact_match"] is False and run["k"] == 10


@pytest.mark.slow
def test_prompt_inventory_shows_what_the_player_carries_in_the_transcript(zork1):
    from jitrl_cli.core.config import AgentConfig
    from jitrl_cli.llm.backend import Backend
    from jitrl_cli.runs.session import open_game_session
    from memories.embedding import get_embedder

    session = open_game_session(zork1, Backend.from_options(None, 2048), 10, 10.0)
    try:
        for flag in (True, False):
            agent = session.agent(get_embedder(), None, AgentConfig(prompt_inventory=flag, learn=False))
            ctx, obs, info = agent.begin_episode(session.env, "zork1", 1, session.header)
            for action in ("open mailbox", "take leaflet"):
                obs, _, _, _, info = session.env.step(action)
                ctx.prompt.append(ctx.prompt.candidate_tokens(action), agent.prompt_text(obs, info))
            text = session.llm.detokenize(ctx.prompt.tokens())
            assert ("[carrying: nothing]" in text and "[carrying: leaflet]" in text) == flag, text[-300:]
    finally:
        session.close()
