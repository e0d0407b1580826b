"""The real SQLite + hnswlib store: persistence, growth, idempotence, embedder checks."""

import numpy as np
import pytest

from memories.embedding import HashedNgramEmbedder
from memories.files import MemoryStoreError
from memories.store import TERMINAL, EpisodeRecord, MemoryStore, StepRecord


def _episode(store, rng, game, n_steps, tag):
    emb = store.embedder
    steps = []
    for t in range(n_steps):
        key = f"location: room {rng.integers(0, 40)} | inventory: item {rng.integers(0, 5)} | score: {t} | obs {tag} {t}"
        steps.append(StepRecord(step=t, state_key=key, embedding=emb.embed(key), action=f"act {rng.integers(0, 6)}",
                                reward=float(t % 3), ret=float(rng.normal())))
    return store.write_episode(EpisodeRecord(uuid=f"{game}-{tag}", game=game, score=float(n_steps), steps=n_steps), steps)


def test_reopen_gives_same_neighbours(tmp_path):
    emb = HashedNgramEmbedder()
    rng = np.random.default_rng(0)
    store = MemoryStore(tmp_path, emb)
    for e in range(5):
        _episode(store, rng, "zork1", 30, e)
    queries = [emb.embed(f"location: room {i} | inventory: item 1 | score: 3 | obs") for i in range(10)]
    before = [store.query("zork1", q, k=10) for q in queries]
    store.close()
    reopened = MemoryStore(tmp_path, HashedNgramEmbedder())
    after = [reopened.query("zork1", q, k=10) for q in queries]
    assert before == after
    assert all(len(b) == 10 for b in before)
    assert reopened.count_steps("zork1") == 150 and reopened.count_episodes() == 5
    assert (tmp_path / "index" / "zork1.hnsw").is_file()
    reopened.close()


def test_index_grows_past_initial_capacity(tmp_path):
    emb = HashedNgramEmbedder()
    store = MemoryStore(tmp_path, emb)
    rng = np.random.default_rng(1)
    for e in range(11):  # 11 × 100 steps > the initial capacity of 1024
        _episode(store, rng, "g", 100, e)
    index = store.index_for("g")
    assert index.get_current_count() == 1100
    assert index.get_max_elements() >= 1100
    # every stored step is its own nearest neighbour (checked on a sample), after a reopen too
    store.close()
    store = MemoryStore(tmp_path, emb)
    rows = store._db.execute("SELECT id, embedding FROM steps ORDER BY id DESC LIMIT 30").fetchall()
    for row_id, blob in rows:
        hits = store.query("g", np.frombuffer(blob, dtype=np.float32), k=1)
        assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    store.close()


def test_games_are_namespaced_and_threshold_filters(tmp_path):
    emb = HashedNgramEmbedder()
    store = MemoryStore(tmp_path, emb)
    rng = np.random.default_rng(2)
    _episode(store, rng, "zork1", 10, "a")
    _episode(store, rng, "detective", 10, "b")
    q = emb.embed("location: room 1 | inventory: item 1 | score: 1 | obs a 1")
    zork_ids = {r[0] for r in store._db.execute("SELECT id FROM steps WHERE game='zork1'")}
    assert {h.id for h in store.query("zork1", q, k=50)} <= zork_ids
    assert store.query("zork1", q, k=50, min_similarity=1.01) == []
    assert store.query("nothing-here", q) == []
    store.close()


def test_writing_is_idempotent_per_episode_uuid(tmp_path):
    emb = HashedNgramEmbedder()
    store = MemoryStore(tmp_path, emb)
    rng = np.random.default_rng(3)
    first = _episode(store, rng, "g", 5, "same")
    second = _episode(store, rng, "g", 5, "same")
    assert first == second and store.count_steps() == 5
    store.close()


def test_other_embedder_dimension_is_refused(tmp_path):
    MemoryStore(tmp_path, HashedNgramEmbedder(256)).close()
    with pytest.raises(MemoryStoreError, match="embedder"):
        MemoryStore(tmp_path, HashedNgramEmbedder(128))


def test_wrong_embedding_shape_writes_nothing(tmp_path):
    store = MemoryStore(tmp_path, HashedNgramEmbedder())
    bad = [StepRecord(step=0, state_key="x", embedding=np.zeros(3, np.float32), action="a", reward=0, ret=0)]
    with pytest.raises(MemoryStoreError):
        store.write_episode(EpisodeRecord(uuid="u", game="g", score=0, steps=1), bad)
    assert store.count_episodes() == 0
    store.close()


def test_index_behind_rows_is_caught_up(tmp_path):
    emb = HashedNgramEmbedder()
    store = MemoryStore(tmp_path, emb)
    rng = np.random.default_rng(4)
    _episode(store, rng, "g", 20, 0)
    saved = (tmp_path / "index" / "g.hnsw").read_bytes()
    _episode(store, rng, "g", 20, 1)
    store.close()
    (tmp_path / "index" / "g.hnsw").write_bytes(saved)  # as if the process died before saving the index
    store = MemoryStore(tmp_path, emb)
    assert store.index_for("g").get_current_count() == 40
    store.close()


def test_garbage_index_file_names_file_and_rebuild(tmp_path):
    emb = HashedNgramEmbedder()
    store = MemoryStore(tmp_path, emb)
    _episode(store, np.random.default_rng(5), "g", 5, 0)
    store.close()
    (tmp_path / "index" / "g.hnsw").write_bytes(b"garbage" * 10)
    store = MemoryStore(tmp_path, emb)
    with pytest.raises(MemoryStoreError, match=r"g\.hnsw.*rebuild"):
        store.index_for("g")
    store.close()


def test_embedder_is_deterministic_and_normalised():
    emb = HashedNgramEmbedder()
    a = emb.embed("location: west of house | inventory: nothing | score: 0 | you are standing in an open field")
    b = HashedNgramEmbedder().embed("location: west of house | inventory: nothing | score: 0 | you are standing in an open field")
    c = emb.embed("location: kitchen | inventory: lamp | score: 10 | you are in the kitchen of the white house")
    assert a.shape == (256,) and a.dtype == np.float32
    assert np.array_equal(a, b) and np.linalg.norm(a) == pytest.approx(1.0, abs=1e-6)
    assert float(a @ c) < 0.5
    assert not np.any(emb.embed(""))


def test_exact_match_neighbours_come_first(tmp_path):
    from jitrl_cli.core.retrieval import retrieve_neighbourhood, retrieve_steps

    emb = HashedNgramEmbedder()
    store = MemoryStore(tmp_path, emb)
    key = "location: hall | inventory: nothing | score: 0 | a hall"
    other = "location: cellar | inventory: nothing | score: 0 | a cellar"
    for i in range(3):
        store.write_episode(EpisodeRecord(uuid=f"e{i}", game="g", score=0, steps=2), [
            StepRecord(step=0, state_key=key, embedding=emb.embed(key), action="north", reward=0, ret=1.0, world_hash="H1"),
            StepRecord(step=1, state_key=other, embedding=emb.embed(other), action="up", reward=0, ret=2.0, world_hash="H2"),
        ])
    assert store.world_hash_counts("g", ["H1", "H2", "H3"]) == {"H1": 3, "H2": 3, "H3": 0}
    # the cellar's exact matches first, then ANN neighbours (the hall's steps are similar enough)
    nb = retrieve_steps(store, "g", emb.embed(key), k=5, min_similarity=-1.0, world_hash="H2")
    assert [n.action for n in nb[:3]] == ["up"] * 3 and all(n.similarity == 1.0 for n in nb[:3])
    assert len(nb) == 5 and len({n.id for n in nb}) == 5
    assert [n.action for n in retrieve_steps(store, "g", emb.embed(key), k=2, min_similarity=0.9)] == ["north", "north"]
    # without filling, a visited state keeps to its own steps and an unvisited one still gets ANN neighbours
    nb = retrieve_steps(store, "g", emb.embed(key), k=5, min_similarity=-1.0, world_hash="H2", fill=False)
    assert [n.action for n in nb] == ["up"] * 3
    nb = retrieve_steps(store, "g", emb.embed(key), k=5, min_similarity=-1.0, world_hash="H3", fill=False)
    assert len(nb) == 5 and nb[0].action == "north" and all(n.similarity < 1.0 for n in nb[3:])
    # back-off states: a visited state's neighbourhood is the ANN neighbours outside its own steps; an unvisited
    # state has none (its neighbours already are the ANN ones)
    nb, near = retrieve_neighbourhood(store, "g", emb.embed(key), k=5, min_similarity=-1.0, world_hash="H2", fill=False,
                                      similar=True)
    assert [n.action for n in nb] == ["up"] * 3 and [n.action for n in near] == ["north"] * 3
    assert not {n.id for n in nb} & {n.id for n in near}
    nb, near = retrieve_neighbourhood(store, "g", emb.embed(key), k=5, min_similarity=-1.0, world_hash="H3", fill=False,
                                      similar=True)
    assert len(nb) == 5 and near == []
    store.close()


def test_exact_all_keeps_a_death_older_than_the_last_k_visits(tmp_path):
    # zork2's Foot Bridge: "jump" killed there in the first episode, and 59 later episodes walked on ("north");
    # the k = 50 most recent steps of the world state no longer hold the death, every step of it does
    from jitrl_cli.core.advantage import Exploration, estimate_advantages
    from jitrl_cli.core.retrieval import as_neighbours, retrieve_neighbourhood

    emb = HashedNgramEmbedder()
    store = MemoryStore(tmp_path, emb)
    key = "location: foot bridge | inventory: nothing | score: 0 | a sturdy wooden foot bridge"
    first = key + " | a wizard appears and vanishes"  # the same world state, another observation: a less similar key
    for i in range(60):
        action, ret, text = ("jump", -10.0, first) if i == 0 else ("north", 0.0, key)
        store.write_episode(EpisodeRecord(uuid=f"e{i}", game="zork2", score=ret, steps=1, params={"max_steps": 60}), [
            StepRecord(step=0, state_key=text, embedding=emb.embed(text), action=action, reward=ret, ret=ret,
                       world_hash="BRIDGE")])
    assert len(store.query_exact("zork2", "BRIDGE", None)) == 60
    assert [h.episode_id for h in store.query_exact("zork2", "BRIDGE", 3)] == [60, 59, 58]  # most recent first

    def estimate(exact_all):
        steps, near = retrieve_neighbourhood(store, "zork2", emb.embed(key), 50, 0.5, "BRIDGE", fill=False,
                                             similar=True, exact_all=exact_all)
        return steps, near, estimate_advantages(["north", "jump"], as_neighbours(steps), exploration=Exploration.ucb,
                                                q_estimate="expectimax", similar=as_neighbours(near))

    steps, near, recent = estimate(False)
    assert len(steps) == 50 and "jump" not in {h.action for h in steps + near}
    assert recent.counts[1] == 0 and recent.bonus[1] and recent.normalized[1] == 1.0  # untried again: the top bonus
    steps, near, every = estimate(True)
    assert len(steps) == 60 and near == []
    assert every.counts.tolist() == [59, 1] and every.q[1] == -10.0 and every.normalized[1] < every.normalized[0]
    store.close()


def test_retrieved_steps_know_the_state_they_led_to(tmp_path):
    # an episode that died at step 1 of 5 (terminal), one cut at its step limit (unknown after its last step),
    # and one without a recorded step limit (unknown)
    emb = HashedNgramEmbedder()
    store = MemoryStore(tmp_path, emb)
    key = "location: dark room | inventory: lamp | score: 0 | it is pitch black"

    def steps(hashes):
        return [StepRecord(step=t, state_key=key, embedding=emb.embed(key), action="north", reward=0, ret=0.0,
                           world_hash=h) for t, h in enumerate(hashes)]

    store.write_episode(EpisodeRecord(uuid="died", game="g", score=-10, steps=2, params={"max_steps": 5}), steps(["W", "X"]))
    store.write_episode(EpisodeRecord(uuid="cut", game="g", score=0, steps=2, params={"max_steps": 2}), steps(["W", "W"]))
    store.write_episode(EpisodeRecord(uuid="old", game="g", score=0, steps=1), steps(["W"]))
    exact = {(h.episode_id, h.step): h.next_world for h in store.query_exact("g", "W", 10)}
    assert exact == {(1, 0): "X", (2, 0): "W", (2, 1): None, (3, 0): None}
    assert all(h.world_hash == "W" for h in store.query_exact("g", "W", 10))
    ann = {(h.episode_id, h.step): (h.world_hash, h.next_world) for h in store.query("g", emb.embed(key), k=10)}
    assert ann[(1, 1)] == ("X", TERMINAL) and ann[(1, 0)] == ("W", "X") and ann[(2, 1)] == ("W", None)
    store.close()


def test_situation_deaths_are_the_steps_of_actions_that_killed_in_this_place_with_this_inventory(tmp_path):
    from adapters.state_key import build_state_key, situation_key
    from jitrl_cli.core.retrieval import situation_deaths

    emb = HashedNgramEmbedder()
    store = MemoryStore(tmp_path, emb)

    def episode(uuid, rows, max_steps=10):
        """rows: (location, inventory, observation, action, reward); the episode ends after them (a death where it
        has fewer than ``max_steps`` steps and the last reward is negative)."""
        steps = []
        for t, (loc, inv, obs, action, reward) in enumerate(rows):
            key = build_state_key(loc, inv, 0, obs)
            steps.append(StepRecord(step=t, state_key=key, embedding=emb.embed(key), action=action, reward=reward,
                                    ret=reward, world_hash=f"{uuid}{t}"))
        store.write_episode(EpisodeRecord(uuid=uuid, game="zork2", score=0, steps=len(rows),
                                          params={"max_steps": max_steps}), steps)

    bridge = ("Foot Bridge", [], "a crude but sturdy wooden foot bridge")
    episode("a", [(*bridge, "north", 0.0), (*bridge, "JUMP", -20.0)])                       # jumped to its death
    episode("b", [(*bridge[:2], "a wizard appears", "jump", 0.0), (*bridge, "wait", 0.0)], 2)  # survived; cut at its limit
    episode("c", [("Foot Bridge", ["lamp"], "the bridge", "look", 0.0), ("Foot Bridge", ["lamp"], "x", "look", -20.0)])
    episode("d", [("Narrow Tunnel", [], "a tunnel", "jump", -20.0)])                         # jumped elsewhere
    episode("e", [(*bridge, "wait", 0.0)], 1)                                              # cut at its limit: no death
    here = situation_key("Foot Bridge", [])
    assert here == "location: foot bridge | inventory: nothing | "
    # every step of the candidates in this situation, oldest first, whatever the observation
    assert [(h.episode_id, h.action) for h in store.query_situation("zork2", here, ["jump", "wait", "look"])] == [
        (1, "JUMP"), (2, "jump"), (2, "wait"), (5, "wait")]
    # jump killed here (episode a) and its harmless step of episode b counts with it; wait never killed; look killed
    # only with the lamp carried; north was never taken here by a dying step
    deadly = situation_deaths(store, "zork2", here, ["north", "Jump", "wait", "look"])
    assert [(h.episode_id, h.action, h.next_world) for h in deadly] == [(1, "JUMP", TERMINAL), (2, "jump", "b1")]
    assert [h.ret for h in situation_deaths(store, "zork2", here, ["jump"], returns={deadly[0].id: -7.0})] == [-7.0, 0.0]
    lamp = situation_key("Foot Bridge", ["lamp"])
    assert [h.action for h in situation_deaths(store, "zork2", lamp, ["look", "jump"])] == ["look", "look"]
    assert situation_deaths(store, "zork2", here, []) == [] and situation_deaths(store, "other", here, ["jump"]) == []
    # an action taken from this very world state is left to the state's own steps (episode b jumped from b0)
    assert situation_deaths(store, "zork2", here, ["jump", "look"], world_hash="b0") == []
    assert len(situation_deaths(store, "zork2", here, ["jump"], world_hash="b1")) == 2
    # the episodes that died, and their last steps (b and e were cut at their step limits; 99 is not stored)
    assert store.episode_deaths([1, 2, 3, 4, 5, 99]) == {1: 1, 3: 1, 4: 0} and store.episode_deaths([]) == {}
    # horizon 2: "north" was taken here one step before episode a's death, so it is deadly too
    assert situation_deaths(store, "zork2", here, ["north"]) == []
    assert [(h.episode_id, h.step, h.action) for h in situation_deaths(store, "zork2", here, ["north"], horizon=2)] == [
        (1, 0, "north")]
    assert [h.action for h in situation_deaths(store, "zork2", here, ["north", "wait"], horizon=5)] == ["north"]
    store.close()


def test_episode_uuids_and_ids_by_game(tmp_path):
    store = MemoryStore(tmp_path, HashedNgramEmbedder())
    assert store.episode_uuids() == {} and store.episode_ids(["zork1"]) == []
    rng = np.random.default_rng(5)
    a = _episode(store, rng, "zork1", 3, "a")
    b = _episode(store, rng, "detective", 2, "b")
    c = _episode(store, rng, "zork1", 4, "c")
    assert store.episode_uuids() == {a: "zork1-a", b: "detective-b", c: "zork1-c"}
    assert list(store.episode_uuids()) == sorted([a, b, c])
    assert store.episode_ids(["zork1"]) == [a, c]
    assert store.episode_ids(["detective", "zork1"]) == [a, b, c]
    assert store.episode_ids(["nope"]) == [] and store.episode_ids([]) == []
    store.close()


def test_count_steps_of_episodes(tmp_path):
    store = MemoryStore(tmp_path, HashedNgramEmbedder())
    rng = np.random.default_rng(6)
    a = _episode(store, rng, "zork1", 3, "a")
    b = _episode(store, rng, "detective", 5, "b")
    assert store.count_steps_of_episodes([a]) == 3
    assert store.count_steps_of_episodes([a, b]) == 8
    assert store.count_steps_of_episodes([a, a, 999]) == 3  # repeated and unknown ids
    assert store.count_steps_of_episodes([]) == 0
    store.close()


def test_step_state_of_a_stored_step(tmp_path):
    emb = HashedNgramEmbedder()
    store = MemoryStore(tmp_path, emb)
    key = "location: hall | inventory: lamp"
    steps = [StepRecord(step=0, state_key=key, embedding=emb.embed(key), action="north", reward=0.0, ret=1.0,
                        world_hash="h0"),
             StepRecord(step=1, state_key="location: cellar", embedding=emb.embed("location: cellar"), action="up",
                        reward=1.0, ret=1.0)]
    eid = store.write_episode(EpisodeRecord(uuid="e", game="zork1", score=1.0, steps=2), steps)
    store.close()
    store = MemoryStore(tmp_path, emb, writable=False)
    state = store.step_state(eid, 0)
    assert (state.game, state.state_key, state.world_hash) == ("zork1", key, "h0")
    assert state.embedding.dtype == np.float32 and state.embedding.shape == (emb.dim,)
    np.testing.assert_array_equal(state.embedding, emb.embed(key))
    state.embedding[0] = 5.0  # a writable copy
    assert store.step_state(eid, 1).world_hash is None
    assert store.step_state(eid, 2) is None and store.step_state(eid + 1, 0) is None
    store.close()


def test_count_deaths_and_has_scored(tmp_path):
    """What `--cautious-after` reads: `MemoryStore.count_deaths` (episodes that ended before their step limit with a
    negative last reward) and `MemoryStore.has_scored` (a step whose score rose over the step before it in the same
    episode, or is above the score the game starts with)."""
    emb = HashedNgramEmbedder()
    store = MemoryStore(tmp_path, emb)

    def episode(uid, game, scores, rewards, max_steps=60):
        steps = [StepRecord(step=t, state_key=f"{uid} {t}", embedding=emb.embed(f"{uid} {t}"), action="wait",
                            reward=r, ret=0.0, score=s) for t, (s, r) in enumerate(zip(scores, rewards))]
        store.write_episode(EpisodeRecord(uuid=uid, game=game, score=scores[-1], steps=len(steps),
                                          params={"max_steps": max_steps}), steps)

    assert (store.count_deaths("g"), store.has_scored("g")) == (0, False)
    episode("died", "g", [0, 0, -10], [0, 0, -20])  # ended at step 3 of 60, lost: a death
    episode("limit", "g", [0, -10], [0, -20], max_steps=2)  # lost at its step limit: not counted
    episode("first", "g", [5, 5], [5, 0])  # a point at the first step: seen only against the start score
    episode("other", "h", [0, 1, 1], [0, 1, 0])
    assert store.count_deaths("g") == 1 and store.count_deaths("h") == 0
    assert not store.has_scored("g") and not store.has_scored("g", start_score=5.0)
    assert store.has_scored("g", start_score=0.0) and store.has_scored("h")
    # before_episode: what an episode saw, only the episodes stored before it (row ids 1-4 so far: died, limit, first, other)
    assert store.count_deaths("g", before_episode=1) == 0 and store.count_deaths("g", before_episode=2) == 1
    assert not store.has_scored("g", start_score=0.0, before_episode=3) and store.has_scored("g", 0.0, before_episode=4)
    episode("fell", "k", [0, -10, -10], [0, -10, 0])  # a loss, then nothing: no rise
    assert not store.has_scored("k", start_score=0.0)
    episode("rose", "k", [0, -10, -5], [0, -10, 5])  # a rise that stays below the start score
    assert store.has_scored("k", start_score=0.0) and store.count_deaths("k") == 0
    store.close()
