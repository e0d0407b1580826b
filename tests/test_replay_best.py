"""`--replay-best`: phased exploration (Go-Explore, XTX) — each episode first replays the best stored episode
up to its last score gain, then the policy explores. Real zork1, real memory, the real model."""

from __future__ import annotations

import json
import uuid

import pytest

from adapters.jericho_env import JerichoEnv
from jitrl_cli.core.archive import best_prefix
from memories.embedding import get_embedder
from memories.store import EpisodeRecord, MemoryStore, StepRecord
from tests.conftest import run_cli

ROUTE = ["north", "east", "open window", "west", "take all"]  # the kitchen (+10) on the 4th step


def test_best_prefix_ends_at_the_first_step_with_the_best_score_without_loops():
    steps = [("a", 0.0, "h0"), ("b", 10.0, "h1"), ("c", 10.0, "h2"), ("d", 35.0, "h3"), ("e", 35.0, "h4")]
    assert best_prefix(steps) == [("a", "h0"), ("b", "h1"), ("c", "h2"), ("d", "h3")]
    assert best_prefix([("a", 36.0, "h0"), ("b", 36.0, "h1")]) == []  # never scored: nothing to replay
    # a loop (h1 → h2 → back to h1) is erased: the replay goes straight on from h1
    wander = [("a", 0.0, "h0"), ("b", 0.0, "h1"), ("c", 0.0, "h2"), ("d", 0.0, "h1"), ("e", 10.0, "h3"), ("f", 10.0, "h4")]
    assert best_prefix(wander) == [("a", "h0"), ("d", "h1"), ("e", "h3")]
    assert best_prefix([]) == []


def store_route(zork1, memory) -> None:
    """Walk ROUTE in the real game and store it as an episode (the best one in memory)."""
    embedder = get_embedder()
    env = JerichoEnv(zork1, max_steps=10)
    obs, info = env.reset()
    records = []
    for t, action in enumerate(ROUTE):
        assert action in info["candidates"]
        nxt, reward, _, _, nxt_info = env.step(action)
        records.append(StepRecord(step=t, state_key=info["state_key"], embedding=embedder.embed(info["state_key"]),
                                  action=action, reward=float(reward), ret=0.0, score=float(nxt_info["score"]),
                                  world_hash=info["state_hash"], observation=obs))
        obs, info = nxt, nxt_info
    env.close()
    assert records[3].score == 10.0
    with MemoryStore(memory, embedder) as store:
        store.write_episode(EpisodeRecord(uuid=uuid.uuid4().hex, game="zork1", score=10.0, steps=len(ROUTE),
                                          max_score=350.0, model="route", params={}, started_at="2026-12-03T00:00:00",
                                          finished_at="2026-12-03T00:00:01"), records)


@pytest.mark.slow
def test_episodes_replay_the_best_stored_route_to_a_drawn_point_then_explore(zork1, tmp_path):
    logs = tmp_path / "logs"
    drawn = {}
    for flag in ("--replay-best", "--no-replay-best"):
        memory = tmp_path / flag / "memory"
        store_route(zork1, memory)
        # β 0: the policy alone (the prior) would not walk the route; the replay walks a prefix of it
        result = run_cli("play", "zork1", "-n", "4", "--max-steps", "6", "--json", "--memory", str(memory),
                         "--log-dir", str(logs / flag), "--seed", "3", "--beta", "0", flag,
                         *([] if flag == "--replay-best" else ["--no-go-explore"]))  # no return at all
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for path in sorted((logs / flag).glob("*.jsonl")) for line in path.read_text().splitlines()]
        episodes = {r["episode"]: r for r in map(json.loads, result.stdout.splitlines())}
        for episode in range(1, 5):
            steps = [r for r in rows if r["episode"] == episode]
            actions = [r["action"] for r in steps]
            shared = min(len(actions), len(ROUTE))
            drawn[flag, episode] = next((i for i in range(shared) if actions[i] != ROUTE[i]), shared)
            # the step log marks the replayed steps: a prefix of the route, then the policy's own draws
            marks = [r["replayed"] for r in steps]
            n = sum(marks)
            assert marks == [True] * n + [False] * (len(marks) - n)
            assert actions[:n] == ROUTE[:n] and n <= drawn[flag, episode]
            assert episodes[episode]["replayed_steps"] == n
            assert (n >= 1) == (flag == "--replay-best")
    replayed = [drawn["--replay-best", e] for e in range(1, 5)]
    assert all(1 <= n <= 5 for n in replayed)  # every episode starts on the route
    assert max(replayed) >= 4  # some replay reaches the frontier (the kitchen, step 4)
    assert sum(drawn["--no-replay-best", e] for e in range(1, 5)) < sum(replayed)


def test_the_best_episode_is_the_one_that_reached_the_highest_score_first(tmp_path):
    """An episode that reached 35 and then died (ending at 25) beats one that ended at 30; of two that reached
    35, the one that got there in fewer steps wins."""
    import numpy as np

    embedder = get_embedder()

    def episode(store, scores, tag):
        steps = [StepRecord(step=t, state_key=f"s{t}", embedding=np.ones(embedder.dim, dtype=np.float32),
                            action=f"{tag}{t}", reward=0.0, ret=0.0, score=s, world_hash=f"{tag}h{t}", observation="")
                 for t, s in enumerate(scores)]
        store.write_episode(EpisodeRecord(uuid=uuid.uuid4().hex, game="zork1", score=scores[-1], steps=len(scores)), steps)

    with MemoryStore(tmp_path / "memory", embedder) as store:
        episode(store, [0.0, 10.0, 30.0, 30.0], "a")
        episode(store, [0.0, 10.0, 10.0, 35.0, 25.0], "b")  # died after reaching 35
        episode(store, [0.0, 0.0, 10.0, 10.0, 35.0], "c")  # reached 35 one step later
        steps = store.best_episode_steps("zork1")
    assert [a for a, _, _ in steps] == ["b0", "b1", "b2", "b3", "b4"]
    assert [a for a, _ in best_prefix(steps)] == ["b0", "b1", "b2", "b3"]
