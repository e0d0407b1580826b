"""`--go-explore`: Go-Explore's return — each episode first replays the shortest stored path to a cell of the
archive (location, inventory, score), then the policy explores. Real SQLite memory, real zork1, the real model."""

from __future__ import annotations

import json
import math
import sqlite3
import uuid

import numpy as np
import pytest

from jitrl_cli.core.archive import SCORE_TEMPERATURE, Cell, build_archive, cell_key, cell_weights, select_cell
from memories.embedding import get_embedder
from memories.store import EpisodeRecord, MemoryStore, StepRecord
from tests.conftest import run_cli
from tests.test_replay_best import ROUTE, store_route


def key(location: str, inventory: str = "nothing") -> str:
    return f"location: {location} | inventory: {inventory} | score: 0 | obs"


def write(store: MemoryStore, steps: list[tuple[str, str, float]], params: dict | None = None,
          worlds: list[str] | None = None) -> None:
    """Store an episode of (state key, action, score after the step) steps; world hashes ``worlds`` or "w<step><action>"."""
    embedder = get_embedder()
    worlds = worlds or [f"w{t}{a}" for t, (_, a, _) in enumerate(steps)]
    records = [StepRecord(step=t, state_key=k, embedding=np.ones(embedder.dim, dtype=np.float32), action=a, reward=0.0,
                          ret=0.0, score=s, world_hash=w, observation="") for t, ((k, a, s), w) in enumerate(zip(steps, worlds))]
    store.write_episode(EpisodeRecord(uuid=uuid.uuid4().hex, game="zork1", score=steps[-1][2], steps=len(steps),
                                      params=params or {}), records)


def test_the_archive_keeps_each_cells_shortest_path_its_visits_and_the_episodes_that_returned_to_it(tmp_path):
    with MemoryStore(tmp_path / "memory", get_embedder()) as store:
        # the kitchen reached at 10 points after 3 steps, the living room with the lamp after 4
        write(store, [(key("west of house"), "north", 0.0), (key("north of house"), "east", 0.0),
                      (key("behind house"), "enter window", 10.0), (key("kitchen"), "west", 10.0),
                      (key("living room"), "take lamp", 10.0), (key("living room", "lamp"), "east", 10.0)])
        # the kitchen again, by a longer way, and at 0 points once (another cell)
        write(store, [(key("west of house"), "south", 0.0), (key("south of house"), "east", 0.0),
                      (key("behind house"), "look", 0.0), (key("behind house"), "enter window", 10.0),
                      (key("kitchen"), "west", 10.0)], params={"return_cell": "x"})
        write(store, [(key("west of house"), "north", 0.0)], params={"return_cell": cell_key("location: kitchen | inventory: nothing | ", 10)})
        rows = store.trajectories("zork1")
        chosen = store.episode_param_counts("zork1", "return_cell")
    assert len(rows) == 12 and rows[0][1:3] == (key("west of house"), "north") and rows[0][4] == "w0north"
    assert chosen == {"x": 1, "location: kitchen | inventory: nothing | score: 10": 1}
    cells = build_archive(rows, start_score=0.0, chosen=chosen)
    kitchen = cells["location: kitchen | inventory: nothing | score: 10"]
    assert [a for a, _ in kitchen.path] == ["north", "east", "enter window"]  # the first episode's, the shorter
    assert [w for _, w in kitchen.path] == ["w0north", "w1east", "w2enter window"]  # the world hash before each step
    assert kitchen.seen == 2 and kitchen.chosen == 1 and kitchen.score == 10.0
    assert cells["location: west of house | inventory: nothing | score: 0"].path == []
    assert cells["location: west of house | inventory: nothing | score: 0"].seen == 3
    assert cells["location: behind house | inventory: nothing | score: 0"].seen == 3  # two episodes, "look" once more
    lamp = cells["location: living room | inventory: lamp | score: 10"]
    assert [a for a, _ in lamp.path] == ["north", "east", "enter window", "west", "take lamp"]
    assert len(cells) == 7  # west, north, south, behind (0), kitchen (10), living room with and without the lamp
    assert "x" not in cells  # a recorded cell that is not in the archive is ignored


def test_a_cells_path_has_its_loops_erased(tmp_path):
    """An episode that walked west of house → north → back → north again reaches the north of the house by one step."""
    with MemoryStore(tmp_path / "memory", get_embedder()) as store:
        write(store, [(key("west of house"), "north", 0.0), (key("north of house"), "south", 0.0),
                      (key("west of house"), "north", 0.0), (key("north of house"), "east", 0.0),
                      (key("behind house"), "look", 0.0)], worlds=["a", "b", "a", "b", "c"])
        cells = build_archive(store.trajectories("zork1"), start_score=0.0)
    assert cells["location: north of house | inventory: nothing | score: 0"].path == [("north", "a")]
    assert cells["location: behind house | inventory: nothing | score: 0"].path == [("north", "a"), ("east", "b")]
    assert cells["location: north of house | inventory: nothing | score: 0"].seen == 2


def test_cells_rarely_seen_or_near_the_best_score_weigh_more():
    cells = [Cell("a", 10.0, seen=1), Cell("b", 10.0, seen=8, chosen=3), Cell("c", 0.0, seen=1)]
    w = cell_weights(cells, max_score=350.0)
    tau = SCORE_TEMPERATURE * 350.0
    assert w[0] == pytest.approx(1 + 1 / math.sqrt(2))
    assert w[1] == pytest.approx(1 / 2 + 1 / 3)
    assert w[2] == pytest.approx((1 + 1 / math.sqrt(2)) * math.exp(-10.0 / tau))
    assert w[0] > max(w[1], w[2])  # seen once and at the best score
    # τ is at least one point: a game whose maximum is small or unknown still prefers its best cells
    assert cell_weights(cells, max_score=0.0)[2] == pytest.approx((1 + 1 / math.sqrt(2)) * math.exp(-10.0))
    drawn = [select_cell({c.key: c for c in cells}, 350.0, np.random.default_rng(s)).key for s in range(2000)]
    shares = {k: drawn.count(k) / len(drawn) for k in "abc"}
    assert shares == pytest.approx(dict(zip("abc", w / w.sum())), abs=0.03)
    assert select_cell({}, 350.0, np.random.default_rng(0)) is None


@pytest.mark.slow
def test_each_episode_replays_the_shortest_stored_path_to_its_drawn_cell_then_explores(zork1, tmp_path):
    memory, logs = tmp_path / "memory", tmp_path / "logs"
    store_route(zork1, memory)
    # β 0: the prior alone would not walk the route; the return does
    result = run_cli("play", "zork1", "-n", "6", "--max-steps", "6", "--json", "--memory", str(memory),
                     "--log-dir", str(logs), "--seed", "2", "--beta", "0")  # --go-explore is the default
    assert result.returncode == 0, result.stderr
    episodes = [json.loads(line) for line in result.stdout.splitlines()]
    rows = [json.loads(line) for path in sorted(logs.glob("*.jsonl")) for line in path.read_text().splitlines()]
    db = sqlite3.connect(memory / "memory.sqlite")
    stored = db.execute("SELECT id, json_extract(params, '$.return_cell') FROM episodes ORDER BY id").fetchall()
    trajectories = [(int(e), k, a, sc, w) for e, k, a, sc, w in db.execute(
        "SELECT episode_id, state_key, action, score, world_hash FROM steps ORDER BY episode_id, step")]
    assert len(stored) == 7 and stored[0][1] is None  # the route, then the six episodes played
    lengths = []
    for (episode_id, cell), result_row in zip(stored[1:], episodes):
        archive = build_archive([r for r in trajectories if r[0] < episode_id], start_score=0.0)
        assert cell in archive  # the cell the episode returned to was in the archive it saw
        path = [a for a, _ in archive[cell].path]
        actions = [r["action"] for r in rows if r["episode"] == result_row["episode"]]
        marks = [r["replayed"] for r in rows if r["episode"] == result_row["episode"]]
        n = result_row["replayed_steps"]
        assert n == len(path) and actions[:n] == path  # the whole path, replayed: the game is deterministic
        assert marks == [True] * n + [False] * (len(marks) - n)  # then the policy's own draws
        lengths.append(n)
    assert max(lengths) >= 3  # some episode returned past the route's first steps (behind the house or the kitchen)
    # --no-go-explore replays nothing and records no cell
    result = run_cli("play", "zork1", "-n", "1", "--max-steps", "3", "--json", "--memory", str(memory), "--seed", "2",
                     "--beta", "0", "--no-go-explore")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["replayed_steps"] == 0
    last = "SELECT json_extract(params, '$.go_explore'), json_extract(params, '$.return_cell') FROM episodes ORDER BY id DESC LIMIT 1"
    assert db.execute(last).fetchone() == (0, None)
    # --replay-best alone takes the place of the default return (not an error): the best episode's path, no cell
    result = run_cli("play", "zork1", "-n", "1", "--max-steps", "3", "--json", "--memory", str(memory), "--seed", "2",
                     "--beta", "0", "--replay-best")
    assert result.returncode == 0, result.stderr
    assert db.execute(last).fetchone() == (0, None)
    assert db.execute("SELECT json_extract(params, '$.replay_best') FROM episodes ORDER BY id DESC LIMIT 1").fetchone() == (1,)
