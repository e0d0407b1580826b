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


def _play(tmp, game, *args):
    """`jitrl play GAME --json` with a fresh memory and a step log under ``tmp``: (memory dir, logged steps)."""
    mem, logs = tmp / "mem", tmp / "logs"
    proc = run_cli("play", game, "--json", "--memory", str(mem), "--log-dir", str(logs), *args)
    assert proc.returncode == 0, proc.stderr
    return mem, [json.loads(line) for f in sorted(logs.glob("*.jsonl")) for line in f.read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """6 episodes × 5 steps of zork1 with a count-based novelty reward, so that the returns of one
    (state, action) differ from episode to episode and Q̂ = max differs from the mean."""
    tmp = tmp_path_factory.mktemp("policy")
    mem, rows = _play(tmp, "zork1", "--episodes", str(EPISODES), "--max-steps", "5", "--beta", str(BETA),
                      "--temperature", str(TEMPERATURE), "--q-estimate", "max", "--novelty", "1", "--seed", "3",
                      "--no-backoff-states")
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


def test_puct_bonus_is_weighted_by_the_logged_prior(tmp_path):
    """`--exploration puct` on the real engine and model: every logged raw advantage is
    (Q̂ − V̂ where some neighbour took the action) + α·π(a)·sqrt(|N| + m)/(n(a) + m(a) + 1), with π the logged prior
    and m(a) the times the action was already taken from this world state earlier in the episode (from memory.sqlite)."""
    alpha = 2.0
    mem, rows = _play(tmp_path, "zork1", "--episodes", "3", "--max-steps", "6", "--exploration", "puct",
                      "--alpha", str(alpha), "--seed", "1", "--no-backoff-states")
    with sqlite3.connect(mem / "memory.sqlite") as db:
        world = {(u, s): h for u, s, h in db.execute(
            "SELECT e.uuid, s.step, s.world_hash FROM steps s JOIN episodes e ON e.id = s.episode_id")}
    norm = lambda a: " ".join(a.lower().split())  # noqa: E731
    checked = 0
    for row in rows:
        here = world[(row["uuid"], row["step"])]
        before = [norm(r["action"]) for r in rows if r["uuid"] == row["uuid"] and r["step"] < row["step"]
                  and world[(r["uuid"], r["step"])] == here]
        pending = np.array([before.count(norm(c["action"])) for c in row["candidates"]])
        if row["neighbours"] == 0 and not pending.any():
            assert not any(c["raw_advantage"] for c in row["candidates"])  # first visit, empty memory: the prior alone
            continue
        prior = np.array([c["prior"] for c in row["candidates"]])
        counts = np.array([c["count"] for c in row["candidates"]])
        q = np.array([c["q"] if c["count"] else row["value"] for c in row["candidates"]], dtype=float)
        want = (q - row["value"]) + alpha * prior * np.sqrt(row["neighbours"] + pending.sum()) / (counts + pending + 1)
        assert [c["raw_advantage"] for c in row["candidates"]] == pytest.approx(want, abs=1e-9)
        checked += 1
    assert checked >= 6, checked


def test_backoff_states_value_an_action_untried_here_by_its_returns_in_other_world_states(tmp_path):
    """`--backoff-states` on the real engine and model: a candidate logged as ``backed_off`` was never taken from this
    world state by an earlier episode (memory.sqlite), its Q̂ is the best return (``--q-estimate max``, given here) of
    a stored step that took it from another world state, and it gets the UCB bonus of a seen action:
    raw = Q̂ − V̂ + α·sqrt(ln(|N| + m + 1)/(n(a) + m(a) + 1)), n(a) counted among those similar steps."""
    mem, rows = _play(tmp_path, "zork1", "--episodes", "4", "--max-steps", "8", "--backoff-states", "--q-estimate", "max",
                      "--seed", "1")
    norm = lambda a: " ".join(a.lower().split())  # noqa: E731
    with sqlite3.connect(mem / "memory.sqlite") as db:
        stored = db.execute("SELECT e.uuid, e.id, s.step, s.world_hash, s.action, s.ret FROM steps s "
                            "JOIN episodes e ON e.id = s.episode_id").fetchall()
    episode_id = {u: i for u, i, *_ in stored}
    world = {(u, s): h for u, _, s, h, _, _ in stored}
    checked = 0
    for row in rows:
        here, before = world[(row["uuid"], row["step"])], episode_id[row["uuid"]]
        earlier = [(h, norm(a), g) for _, i, _, h, a, g in stored if i < before]
        taken_here = {a for h, a, _ in earlier if h == here}
        visits = [norm(r["action"]) for r in rows if r["uuid"] == row["uuid"] and r["step"] < row["step"]
                  and world[(r["uuid"], r["step"])] == here]
        for c in (c for c in row["candidates"] if c["backed_off"]):
            action = norm(c["action"])
            assert row["neighbours"] > 0 and action not in taken_here
            elsewhere = [g for h, a, g in earlier if h != here and a == action]
            assert any(abs(c["q"] - g) < 1e-9 for g in elsewhere) and 1 <= c["count"] <= len(elsewhere)
            m, m_a = len(visits), visits.count(action)
            bonus = np.sqrt(np.log(row["neighbours"] + m + 1) / (c["count"] + m_a + 1))
            assert c["raw_advantage"] == pytest.approx(c["q"] - row["value"] + bonus, abs=1e-9)
            checked += 1
    assert checked >= 3, checked


WIZARD = ("A strange little man in a long cloak appears suddenly in the room. He is wearing a high pointed hat embroidered"
          " with astrological signs. He has a long, stringy, and unkempt beard. The wizard draws forth his wand and waves"
          " it in your direction. It begins to glow with a faint blue glow.")


def test_avoid_deaths_values_an_action_that_killed_in_this_place_by_that_death(tmp_path):
    """`--avoid-deaths` on the real zork2 engine and model, with a memory holding one stored death: "jump" on the Foot
    Bridge with nothing carried, in another world state (G = −20). Wherever the agent then stands on the bridge
    carrying nothing and its own neighbours never took "jump", "jump" is logged as backed off with that death's
    return as Q̂, one step behind it, the UCB bonus of a seen action, and almost no posterior probability; it is never
    chosen. Without the flag the same memory leaves "jump" untried there (the largest bonus)."""
    from adapters.state_key import build_state_key
    from memories.embedding import HashedNgramEmbedder
    from memories.store import EpisodeRecord, MemoryStore, StepRecord

    def seeded(name):
        mem = tmp_path / name
        emb = HashedNgramEmbedder()
        # the bridge after the wizard's visit: too unlike the bridge's own observations to be among their ANN neighbours
        key = build_state_key("Foot Bridge", [], 0, WIZARD)
        with MemoryStore(mem, emb) as store:
            store.write_episode(EpisodeRecord(uuid="jumped", game="zork2", score=-10, steps=1, params={"max_steps": 60}),
                                [StepRecord(step=0, state_key=key, embedding=emb.embed(key), action="jump", reward=-20.0,
                                            ret=-20.0, world_hash="elsewhere")])
        return mem

    def bridge_jumps(rows):
        return [(row, c) for row in rows if row["location"] == "Foot Bridge" for c in row["candidates"] if c["action"] == "jump"]

    common = ("--episodes", "1", "--max-steps", "8", "--seed", "2", "--memory")
    logs = tmp_path / "logs"
    proc = run_cli("play", "zork2", "--json", *common, str(seeded("avoid")), "--log-dir", str(logs), "--avoid-deaths")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for f in sorted(logs.glob("*.jsonl")) for line in f.read_text().splitlines()]
    checked = bridge_jumps(rows)
    assert checked, [row["location"] for row in rows]
    for row, c in checked:
        assert row["neighbours"] == 0 and row["value"] == 0.0  # no neighbour: only the death values "jump"
        assert c["backed_off"] and c["count"] == 1 and c["q"] == pytest.approx(-20.0)
        assert -20.0 <= c["raw_advantage"] < -18.0  # A = Q̂ − V̂ + a UCB bonus of sqrt(ln(1 + m)/2), m < 8 earlier visits
        assert c["advantage"] == pytest.approx(-1.0) and c["posterior"] < 1e-6
        assert row["action"] != "jump"
    logs = tmp_path / "plain-logs"
    proc = run_cli("play", "zork2", "--json", *common, str(seeded("plain")), "--log-dir", str(logs))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for f in sorted(logs.glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert bridge_jumps(rows) and all(not c["backed_off"] and c["count"] == 0 for _, c in bridge_jumps(rows))


def test_avoid_deaths_own_pools_this_world_states_own_steps_with_a_death_in_its_situation(tmp_path):
    """`--avoid-deaths-own` on the real zork2 engine and model. One episode is played; then a death is stored for its
    first action, taken in the same situation (the start's location and inventory) but another world state. Back at
    the start, `--avoid-deaths` leaves that action to the start's neighbours, whose expectimax takes the best world state (Q̂ = G₀,
    not backed off);
    `--avoid-deaths-own` values it by both steps as chance outcomes: Q̂ = (G₀ + (−20)) / 2, backed off."""
    import shutil

    from adapters.state_key import situation_of
    from memories.embedding import HashedNgramEmbedder
    from memories.store import EpisodeRecord, MemoryStore, StepRecord

    mem = tmp_path / "mem"
    proc = run_cli("play", "zork2", "--json", "--episodes", "1", "--max-steps", "2", "--seed", "2", "--memory", str(mem))
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(mem / "memory.sqlite") as db:
        key, action, ret = db.execute("SELECT state_key, action, ret FROM steps WHERE step = 0").fetchone()
    emb = HashedNgramEmbedder()
    dark = situation_of(key) + "score: 0 | it is pitch black. you are likely to be eaten by a grue."
    with MemoryStore(mem, emb) as store:
        store.write_episode(EpisodeRecord(uuid="eaten", game="zork2", score=-10, steps=1, params={"max_steps": 60}),
                            [StepRecord(step=0, state_key=dark, embedding=emb.embed(dark), action=action, reward=-20.0,
                                        ret=-20.0, world_hash="elsewhere")])
    shutil.copytree(mem, tmp_path / "copy")

    def first_step(memory, flag):
        logs = tmp_path / f"logs{flag}"
        proc = run_cli("play", "zork2", "--json", "--episodes", "1", "--max-steps", "1", "--seed", "2", "--memory",
                       str(memory), "--log-dir", str(logs), flag)
        assert proc.returncode == 0, proc.stderr
        row = json.loads(next(logs.glob("*.jsonl")).read_text().splitlines()[0])
        return next(c for c in row["candidates"] if c["action"] == action)

    own = first_step(tmp_path / "copy", "--avoid-deaths")
    assert not own["backed_off"] and own["q"] == pytest.approx(ret)  # the ANN neighbours' max over world states
    pooled = first_step(mem, "--avoid-deaths-own")
    assert pooled["backed_off"] and pooled["count"] == 2 and pooled["q"] == pytest.approx((ret - 20.0) / 2)


def test_avoid_deaths_horizon_values_the_move_into_a_trap_by_the_death_that_followed(tmp_path):
    """`--avoid-deaths-horizon 2` on the real zork2 engine and model. One episode is played; then an episode is stored
    that took, from the start's situation (another world state), a candidate the start never took, and died at its
    next step, in the dark (G = −20·0.95 at the first step), and one that took it into the same dark world state and
    survived there (G = 0). Back at the start, with the default horizon 1 that candidate is not deadly (not backed
    off); with horizon 2 it is valued by the mean of both steps' returns: Q̂ = −9.5 (the expectimax would give 0, the
    best return after that next state), backed off."""
    import shutil

    from adapters.state_key import situation_of
    from memories.embedding import HashedNgramEmbedder
    from memories.store import EpisodeRecord, MemoryStore, StepRecord

    mem, logs = tmp_path / "mem", tmp_path / "logs"
    proc = run_cli("play", "zork2", "--json", "--episodes", "1", "--max-steps", "2", "--seed", "2", "--memory", str(mem),
                   "--log-dir", str(logs))
    assert proc.returncode == 0, proc.stderr
    first = json.loads(next(logs.glob("*.jsonl")).read_text().splitlines()[0])
    entrance = "take sword"  # a candidate at the start that the first episode did not take there (it went south)
    assert first["action"] != entrance and entrance in [c["action"] for c in first["candidates"]]
    with sqlite3.connect(mem / "memory.sqlite") as db:
        (key,) = db.execute("SELECT state_key FROM steps WHERE step = 0").fetchone()
    emb = HashedNgramEmbedder()
    before = situation_of(key) + "score: 0 | a quiet moment at the start"
    dark = "location: dark place | inventory: nothing | score: 0 | it is pitch black. you are likely to be eaten by a grue."
    with MemoryStore(mem, emb) as store:
        store.write_episode(EpisodeRecord(uuid="trapped", game="zork2", score=-10, steps=2, params={"max_steps": 60}),
                            [StepRecord(step=0, state_key=before, embedding=emb.embed(before), action=entrance,
                                        reward=0.0, ret=-19.0, world_hash="elsewhere"),
                             StepRecord(step=1, state_key=dark, embedding=emb.embed(dark), action="north",
                                        reward=-20.0, ret=-20.0, world_hash="dark")])
        store.write_episode(EpisodeRecord(uuid="lucky", game="zork2", score=0, steps=2, params={"max_steps": 2}),
                            [StepRecord(step=0, state_key=before, embedding=emb.embed(before), action=entrance,
                                        reward=0.0, ret=0.0, world_hash="elsewhere too"),
                             StepRecord(step=1, state_key=dark, embedding=emb.embed(dark), action="north",
                                        reward=0.0, ret=0.0, world_hash="dark")])
    shutil.copytree(mem, tmp_path / "copy")

    def first_step(memory, *flags):
        out = tmp_path / f"logs{len(flags)}"
        proc = run_cli("play", "zork2", "--json", "--episodes", "1", "--max-steps", "1", "--seed", "2", "--memory",
                       str(memory), "--log-dir", str(out), "--avoid-deaths", *flags)
        assert proc.returncode == 0, proc.stderr
        row = json.loads(next(out.glob("*.jsonl")).read_text().splitlines()[0])
        return next(c for c in row["candidates"] if c["action"] == entrance)

    assert not first_step(tmp_path / "copy")["backed_off"]
    trap = first_step(mem, "--avoid-deaths-horizon", "2")
    assert trap["backed_off"] and trap["count"] == 2 and trap["q"] == pytest.approx(-9.5)


def test_expectimax_is_the_best_return_per_outcome_weighted_by_how_often_it_happened(tmp_path):
    """`--q-estimate expectimax` on the real engine and model: every logged Q̂ of a candidate taken from this world state
    by earlier episodes equals Σ_{s'} n(s')/n · max G over the steps that led to s', recomputed from memory.sqlite (s':
    the episode's next stored world hash, or the end of an episode that stopped before its step limit; a step cut at
    the step limit counts only where no step has a known successor). zork2's seed 1 is chosen so that this differs
    from the max: the same action from the same world state led to different states (zork2 is not deterministic)."""
    mem, rows = _play(tmp_path, "zork2", "--episodes", "6", "--max-steps", "12", "--q-estimate", "expectimax", "--seed", "1",
                      "--no-backoff-states", "--no-go-explore")  # the play the seed was chosen for (no return first)
    norm = lambda a: " ".join(a.lower().split())  # noqa: E731
    with sqlite3.connect(mem / "memory.sqlite") as db:
        stored = db.execute("SELECT e.uuid, e.id, e.steps, json_extract(e.params, '$.max_steps'), s.step, s.world_hash,"
                            " s.action, s.ret FROM steps s JOIN episodes e ON e.id = s.episode_id").fetchall()
    world = {(u, t): h for u, _, _, _, t, h, _, _ in stored}
    by_id = {i: (n, limit) for _, i, n, limit, *_ in stored}
    following = {(i, t): h for _, i, _, _, t, h, _, _ in stored}
    episode_id = {u: i for u, i, *_ in stored}
    checked = chance = 0
    for row in rows:
        here = world[(row["uuid"], row["step"])]
        earlier = [(i, t, norm(a), g) for _, i, _, _, t, h, a, g in stored if h == here and i < episode_id[row["uuid"]]]
        for c in row["candidates"]:
            took = [(i, t, g) for i, t, a, g in earlier if a == norm(c["action"])]
            if not took:
                continue
            outcomes = defaultdict(list)
            for i, t, g in took:
                steps, limit = by_id[i]
                nxt = following.get((i, t + 1), "terminal" if t + 1 == steps and steps < limit else None)
                if nxt is not None:
                    outcomes[nxt].append(g)
            want = (sum(len(r) * max(r) for r in outcomes.values()) / sum(len(r) for r in outcomes.values())
                    if outcomes else max(g for *_, g in took))
            assert c["q"] == pytest.approx(want, abs=1e-9)
            checked += 1
            chance += len(outcomes) > 1 and not np.isclose(want, max(g for *_, g in took))
    assert checked >= 10 and chance >= 1, (checked, chance)


def test_safe_cycles_takes_the_way_back_where_every_other_move_lost(tmp_path, games_dir):
    """`--safe-cycles` on the real zork2 engine and model. The memory holds, for the Barrow and the Narrow Tunnel (their
    real world states, read from the engine), one safe move each ("south", "north": G = 0) and a loss (G = −20) for
    every other candidate. The agent walks Barrow → Tunnel → Barrow → Tunnel; back in the Tunnel, "north" has closed a
    cycle. With the flag it keeps its own advantage (every other move there is a known loss) and is taken again;
    without it, it gets Ã = −1 like the losses, and the prior chooses among them."""
    from adapters.jericho_env import JerichoEnv
    from memories.embedding import HashedNgramEmbedder
    from memories.store import EpisodeRecord, MemoryStore, StepRecord

    env = JerichoEnv(games_dir / "zork2.z5", max_steps=60)
    try:
        _, barrow = env.reset()
        *_, tunnel = env.step("south")
    finally:
        env.close()
    assert (barrow["location"], tunnel["location"]) == ("Inside Barrow", "Narrow Tunnel")

    def seeded(name):
        mem = tmp_path / name
        emb = HashedNgramEmbedder()
        steps = [StepRecord(step=0, state_key=info["state_key"], embedding=emb.embed(info["state_key"]), action=a,
                            reward=0.0, ret=0.0 if a == safe else -20.0, world_hash=info["state_hash"])
                 for info, safe in ((barrow, "south"), (tunnel, "north")) for a in info["candidates"]]
        with MemoryStore(mem, emb) as store:
            for i, step in enumerate(steps):  # one episode per step, each of one step
                store.write_episode(EpisodeRecord(uuid=f"seed{i}", game="zork2", score=0, steps=1,
                                                  params={"max_steps": 60}), [step])
        return mem

    def tunnel_again(name, *flags):
        logs = tmp_path / f"{name}-logs"
        proc = run_cli("play", "zork2", "--json", "--episodes", "1", "--max-steps", "4", "--seed", "0", "--memory",
                       str(seeded(name)), "--log-dir", str(logs), *flags)
        assert proc.returncode == 0, proc.stderr
        rows = [json.loads(line) for f in sorted(logs.glob("*.jsonl")) for line in f.read_text().splitlines()]
        assert [r["action"] for r in rows[:3]] == ["south", "north", "south"], [r["action"] for r in rows]
        row = rows[3]
        assert row["location"] == "Narrow Tunnel"
        return row, {c["action"]: c for c in row["candidates"]}

    row, by = tunnel_again("safe", "--safe-cycles")
    others = [c for a, c in by.items() if a != "north"]
    assert all(c["count"] >= 1 and c["q"] == pytest.approx(-20.0) for c in others)  # every other move: a known loss
    scale = max(abs(c["raw_advantage"]) for c in by.values())
    assert by["north"]["advantage"] == pytest.approx(by["north"]["raw_advantage"] / scale)
    assert by["north"]["advantage"] > 0
    assert row["action"] == "north"
    _, by = tunnel_again("plain")
    assert by["north"]["advantage"] == -1.0 and by["north"]["q"] == pytest.approx(0.0)


def test_across_worlds_mean_weighs_the_similar_world_states_as_chance(tmp_path, games_dir):
    """`--across-worlds mean` on the real zork2 engine and model. The memory holds "south" taken from two other world
    states with the Barrow's very state key: from one it ended the game (G = −20), from the other it led on (G = 0).
    The Barrow's own world state was never visited, so these steps stand in for it (ANN neighbours). The expectimax
    takes the best world state's value (Q̂ 0) by default; with the flag their step-weighted mean (Q̂ −10)."""
    from adapters.jericho_env import JerichoEnv
    from memories.embedding import HashedNgramEmbedder
    from memories.store import EpisodeRecord, MemoryStore, StepRecord

    env = JerichoEnv(games_dir / "zork2.z5", max_steps=60)
    try:
        _, barrow = env.reset()
    finally:
        env.close()
    assert barrow["location"] == "Inside Barrow" and "south" in barrow["candidates"]

    def seeded(name):
        mem = tmp_path / name
        emb = HashedNgramEmbedder()
        key = barrow["state_key"]

        def step(t, world, action, ret):
            return StepRecord(step=t, state_key=key, embedding=emb.embed(key), action=action, reward=ret, ret=ret,
                              world_hash=world)

        with MemoryStore(mem, emb) as store:  # a death (the episode ended before its limit), and a step that led on
            store.write_episode(EpisodeRecord(uuid="died", game="zork2", score=-10, steps=1, params={"max_steps": 60}),
                                [step(0, "W1", "south", -20.0)])
            store.write_episode(EpisodeRecord(uuid="lived", game="zork2", score=0, steps=2, params={"max_steps": 2}),
                                [step(0, "W2", "south", 0.0), step(1, "W3", "wait", 0.0)])
        return mem

    def south(name, *flags):
        logs = tmp_path / f"{name}-logs"
        proc = run_cli("play", "zork2", "--json", "--episodes", "1", "--max-steps", "1", "--memory", str(seeded(name)),
                       "--log-dir", str(logs), *flags)
        assert proc.returncode == 0, proc.stderr
        row = json.loads(next(iter(sorted(logs.glob("*.jsonl")))).read_text().splitlines()[0])
        assert row["location"] == "Inside Barrow" and row["neighbours"] == 3
        return next(c for c in row["candidates"] if c["action"] == "south")

    best, chance = south("max"), south("mean", "--across-worlds", "mean")
    assert best["count"] == chance["count"] == 2
    assert best["q"] == pytest.approx(0.0) and chance["q"] == pytest.approx(-10.0)


def test_cautious_after_deaths_with_no_point_turns_exploration_and_cycle_avoidance_off(tmp_path, games_dir):
    """`--cautious-after N` on the real zork2 engine and model. The memory holds, for the Barrow and the Narrow Tunnel,
    one safe move each ("south", "north": G = 0) and, for every other candidate, a one-step episode that died there
    (reward −20 before its step limit). zork2 has given no point, so with N at most the number of deaths the episode
    is cautious (the default N is 5): back in the Tunnel, "north", which closed a cycle, keeps its own advantage and is
    taken again, and no candidate gets an exploration bonus. With N above the deaths, after one stored step that
    scored, or with N = 0, the episode explores: "north" gets Ã = −1 (cycle avoidance)."""
    from adapters.jericho_env import JerichoEnv
    from memories.embedding import HashedNgramEmbedder
    from memories.store import EpisodeRecord, MemoryStore, StepRecord

    env = JerichoEnv(games_dir / "zork2.z5", max_steps=60)
    try:
        _, barrow = env.reset()
        *_, tunnel = env.step("south")
    finally:
        env.close()
    emb = HashedNgramEmbedder()
    losses = [(info, a) for info, safe in ((barrow, "south"), (tunnel, "north")) for a in info["candidates"] if a != safe]

    def seeded(name, scored=False):
        mem = tmp_path / name
        with MemoryStore(mem, emb) as store:
            for i, (info, action) in enumerate([(barrow, "south"), (tunnel, "north"), *losses]):
                died = i >= 2
                step = StepRecord(step=0, state_key=info["state_key"], embedding=emb.embed(info["state_key"]),
                                  action=action, reward=-20.0 if died else 0.0, ret=-20.0 if died else 0.0,
                                  world_hash=info["state_hash"], score=-10.0 if died else 0.0)
                store.write_episode(EpisodeRecord(uuid=f"seed{i}", game="zork2", score=step.score, steps=1,
                                                  params={"max_steps": 60}), [step])
            if scored:  # one point, two steps elsewhere
                steps = [StepRecord(step=t, state_key=f"elsewhere {t}", embedding=emb.embed(f"elsewhere {t}"),
                                    action="wait", reward=float(t), ret=float(t), score=float(t)) for t in range(2)]
                store.write_episode(EpisodeRecord(uuid="scored", game="zork2", score=1.0, steps=2,
                                                  params={"max_steps": 60}), steps)
        return mem

    def tunnel_again(name, *flags, scored=False):
        logs = tmp_path / f"{name}-logs"
        proc = run_cli("play", "zork2", "--json", "--episodes", "1", "--max-steps", "4", "--seed", "0", "--memory",
                       str(seeded(name, scored)), "--log-dir", str(logs), *flags)
        assert proc.returncode == 0, proc.stderr
        episode = json.loads(proc.stdout.splitlines()[-1])
        rows = [json.loads(line) for f in sorted(logs.glob("*.jsonl")) for line in f.read_text().splitlines()]
        assert [r["action"] for r in rows[:3]] == ["south", "north", "south"], [r["action"] for r in rows]
        assert rows[3]["location"] == "Narrow Tunnel"
        return episode, rows, {c["action"]: c for c in rows[3]["candidates"]}

    deaths = len(losses)
    assert deaths >= 5
    for name, flags, n in (("cautious", ["--cautious-after", str(deaths)], deaths), ("default", [], 5)):
        episode, rows, by = tunnel_again(name, *flags)
        assert episode["cautious"] and episode["params"]["cautious_after"] == n, name
        assert by["north"]["advantage"] > 0 and rows[3]["action"] == "north", name
        assert not any(c["bonus"] for row in rows for c in row["candidates"]), name
    for name, flags, scored in (("too-few", ["--cautious-after", str(deaths + 1)], False),
                                ("scored", ["--cautious-after", "1"], True), ("off", ["--cautious-after", "0"], False)):
        episode, rows, by = tunnel_again(name, *flags, scored=scored)
        assert not episode["cautious"], name
        assert by["north"]["advantage"] == -1.0 and by["north"]["q"] == pytest.approx(0.0), name
