"""The logged policy of a real run, recomputed from the memory it read: the real zork1 engine, the real
model, a real SQLite/hnswlib memory, the real `jitrl play` process.

Each logged step is checked against what the update and the advantage estimate must have computed:
- posterior p'(a) = softmax(z(a)/T + β·Ã(a)) with the logged prior logits z and advantages Ã
  (paper Theorem 4.1 on logits; jitrl_cli/core/update.py);
- with `--q-estimate max` and exact match, V̂(s) is the mean and Q̂(s,a) the best return G of the
  steps stored from exactly this world state by earlier episodes (jitrl_cli/core/advantage.py), recomputed
  here from memory.sqlite; the run is chosen so that the best and the mean differ.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict

import numpy as np
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

BETA = 2.5
TEMPERATURE = 1.7
EPISODES = 6


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """6 episodes × 5 steps of zork1 with a count-based novelty reward, so that the returns of one
    (state, action) differ from episode to episode and Q̂ = max differs from the mean."""
    tmp = tmp_path_factory.mktemp("policy")
    mem, logs = tmp / "mem", tmp / "logs"
    proc = run_cli("play", "zork1", "--episodes", str(EPISODES), "--max-steps", "5", "--json", "--memory", str(mem),
                   "--log-dir", str(logs), "--beta", str(BETA), "--temperature", str(TEMPERATURE),
                   "--q-estimate", "max", "--novelty", "1", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for f in sorted(logs.glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert len(rows) >= EPISODES * 3
    return mem, rows


def test_logged_posterior_is_softmax_of_prior_over_t_plus_beta_advantage(run):
    _, rows = run
    updated = 0
    for row in rows:
        z = np.array([c["prior_logit"] for c in row["candidates"]])
        adv = np.array([c["advantage"] for c in row["candidates"]])
        logits = z / TEMPERATURE + BETA * adv
        want = np.exp(logits - np.logaddexp.reduce(logits))
        got = np.array([c["posterior"] for c in row["candidates"]])
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
        prior = np.exp(z / TEMPERATURE - np.logaddexp.reduce(z / TEMPERATURE))
        assert [c["prior"] for c in row["candidates"]] == pytest.approx(prior, rel=1e-9, abs=1e-12)
        assert np.all(np.abs(adv) <= 1.0 + 1e-12)
        updated += bool(np.any(adv != 0)) and not np.allclose(got, prior)
    assert updated >= len(rows) // 2, "the run must exercise the update, not only the prior"


def test_q_estimate_max_is_the_best_stored_return_from_the_same_world_state(run):
    mem, rows = run
    with sqlite3.connect(mem / "memory.sqlite") as db:
        stored = db.execute(
            "SELECT e.id, e.uuid, s.step, s.world_hash, s.action, s.ret FROM steps s JOIN episodes e ON e.id = s.episode_id"
        ).fetchall()
    episode_of = {uuid: eid for eid, uuid, *_ in stored}
    hash_of = {(uuid, step): h for _, uuid, step, h, _, _ in stored}
    checked = differs = 0
    for row in rows:
        episode_id = episode_of[row["uuid"]]
        world = hash_of[(row["uuid"], row["step"])]
        earlier = [(" ".join(a.lower().split()), g) for eid, _, _, h, a, g in stored if h == world and eid < episode_id]
        if not earlier:
            continue
        assert row["value"] == pytest.approx(np.mean([g for _, g in earlier]), abs=1e-9)
        returns = defaultdict(list)
        for action, g in earlier:
            returns[action].append(g)
        for c in row["candidates"]:
            taken = returns.get(" ".join(c["action"].lower().split()))
            assert c["count"] == len(taken or [])
            if taken:
                assert c["q"] == pytest.approx(max(taken), abs=1e-9)
                checked += 1
                differs += not np.isclose(max(taken), np.mean(taken))
    assert checked >= 10 and differs >= 3, (checked, differs)
