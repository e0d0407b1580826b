"""`jitrl memory …` through the real CLI, on a memory made by real `jitrl play zork1` runs
and on a hand-built memory whose Q̂/V̂/A values are known."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from memories.embedding import HashedNgramEmbedder
from memories.store import EpisodeRecord, MemoryStore, StepRecord
from tests.conftest import run_cli


def _ok(*args):
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    return proc


def _fails(*args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "memory.lock"}


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    """A memory written by three real `jitrl play zork1` episodes (and one of detective)."""
    mem = tmp_path_factory.mktemp("played") / "mem"
    proc = _ok("play", "zork1", "--episodes", "3", "--max-steps", "8", "--json", "--memory", str(mem))
    episodes = [json.loads(x) for x in proc.stdout.splitlines()]
    _ok("play", "detective", "--episodes", "1", "--max-steps", "5", "--json", "--memory", str(mem))
    return mem, episodes


@pytest.fixture
def known(tmp_path):
    """A memory with one state and designed returns: V̂ = 2, Q̂(open door) = 5, Q̂(north) = 0.5, Q̂(wait) = 0."""
    emb = HashedNgramEmbedder()
    key = "location: hall | inventory: lamp | score: 0 | a dark hall with a door"
    plan = [("open door", 5.0), ("north", 1.0), ("north", 0.0), ("wait", 0.0)]
    with MemoryStore(tmp_path / "mem", emb) as store:
        for i, (action, ret) in enumerate(plan):
            store.write_episode(
                EpisodeRecord(uuid=f"ep{i}", game="toy", score=ret, steps=1),
                [StepRecord(step=0, state_key=key, embedding=emb.embed(key), action=action, reward=ret, ret=ret)],
            )
    return tmp_path / "mem", key


@pytest.mark.slow
def test_stats_and_list_describe_the_played_memory(played):
    mem, episodes = played
    stats = json.loads(_ok("memory", "stats", "--memory", str(mem), "--json").stdout)
    assert stats["embedder"] == "hash-ngram-v1" and stats["dim"] == 256 and stats["schema_version"] == 1
    zork = {g["game"]: g for g in stats["games"]}["zork1"]
    assert zork["episodes"] == 3 and zork["steps"] == sum(e["steps"] for e in episodes) == 24
    assert zork["index"]["count"] == 24 and zork["index"]["M"] == 16
    assert 1 <= zork["distinct_actions"] <= 24 and 1 <= zork["distinct_states"] <= 24
    assert zork["max_score"] == 350 and set(zork["returns"]) >= {"min", "p50", "max", "mean"}
    table = _ok("memory", "stats", "--memory", str(mem)).stdout
    assert "zork1" in table and "detective" in table and "hash-ngram-v1" in table

    rows = [json.loads(x) for x in _ok("memory", "list", "--memory", str(mem), "--game", "zork1", "--json").stdout.splitlines()]
    assert [r["uuid"] for r in rows] == [e["uuid"] for e in episodes]
    assert all(r["params"]["beta"] == 30.0 and r["model"].endswith(".gguf") and r["steps"] == 8 for r in rows)
    assert "zork1" in _ok("memory", "list", "--memory", str(mem)).stdout


@pytest.mark.slow
def test_inspect_a_stored_step_finds_itself(played):
    mem, episodes = played
    out = json.loads(_ok("memory", "inspect", "--memory", str(mem), "--step", f"{episodes[0]['episode_id']}:0", "--json").stdout)
    assert out["game"] == "zork1" and out["neighbours"]
    top = out["neighbours"][0]
    assert top["similarity"] == pytest.approx(1.0, abs=1e-5)
    # V̂ is the mean return of the neighbours, and every neighbour's action is a candidate
    assert out["value"] == pytest.approx(np.mean([n["return"] for n in out["neighbours"]]))
    assert {n["action"].lower() for n in out["neighbours"]} == {a["action"] for a in out["actions"]}
    # as the agent retrieves by default: the steps of the identical world state only, however low the threshold
    with MemoryStore(mem, HashedNgramEmbedder(), writable=False) as store:
        world = {i: h for i, h in store.read("SELECT id, world_hash FROM steps")}
    ref = f"{episodes[0]['episode_id']}:0"
    for flags in ([], ["--fill-neighbours"], ["--no-exact-match"]):
        out = json.loads(_ok("memory", "inspect", "--memory", str(mem), "--step", ref, "--json",
                             "--min-similarity", "-1", *flags).stdout)
        hashes = {world[n["id"]] for n in out["neighbours"]}
        if flags:  # ANN neighbours of other states join them
            assert len(hashes) > 1, flags
            continue
        assert out["params"]["exact_match"] and not out["params"]["fill_neighbours"]
        assert hashes == {world[top["id"]]} and None not in hashes
        same = [i for i, h in world.items() if h == world[top["id"]]]
        assert sorted(n["id"] for n in out["neighbours"]) == sorted(same)[-50:]
    # --exact-all: every step of the world state, however small k (each episode starts in the same one)
    assert len(same) > 2
    for flags, expected in ((["--k", "2"], sorted(same)[-2:]), (["--k", "2", "--exact-all"], sorted(same))):
        out = json.loads(_ok("memory", "inspect", "--memory", str(mem), "--step", ref, "--json", *flags).stdout)
        assert sorted(n["id"] for n in out["neighbours"]) == expected and out["params"]["exact_all"] == ("--exact-all" in flags)
    # --backoff-states: N(s) stays this world state's steps; the actions of similar states join the candidates,
    # and those this state never took are valued by their returns there (Q̂ = max), with no bonus
    # (the paper's, shown with λ = 1, goes to every candidate no step took)
    with MemoryStore(mem, HashedNgramEmbedder(), writable=False) as store:
        taken = store.read("SELECT world_hash, lower(action), ret FROM steps")
    out = json.loads(_ok("memory", "inspect", "--memory", str(mem), "--step", ref, "--json", "--min-similarity", "-1",
                         "--backoff-states", "--exploration", "paper", "--q-estimate", "max").stdout)
    assert out["params"]["backoff_states"] and {world[n["id"]] for n in out["neighbours"]} == {world[top["id"]]}
    own = {n["action"].lower() for n in out["neighbours"]}
    backed = [a for a in out["actions"] if a["backed_off"]]
    assert backed and all(a["action"] not in own and not a["bonus"] for a in backed)
    for a in backed:
        there = [g for h, act, g in taken if act == a["action"] and h != world[top["id"]]]
        assert 1 <= a["count"] <= len(there) and any(abs(a["q"] - g) < 1e-9 for g in there)
    assert "(similar states)" in _ok("memory", "inspect", "--memory", str(mem), "--step", ref, "--min-similarity", "-1",
                                     "--backoff-states").stdout
    overview = _ok("memory", "inspect", "--memory", str(mem)).stdout
    assert "highest mean return" in overview


def test_inspect_says_its_candidates_are_the_neighbourhoods_actions(played):
    # the candidate table lists what the neighbours and similar states took, which may include actions the state
    # itself does not offer (zork2's dark Path Near Stream listed a way back it does not have): the table says so
    mem, episodes = played
    text = " ".join(_ok("memory", "inspect", "--memory", str(mem), "--step", f"{episodes[0]['episode_id']}:0").stdout.split())
    assert "not necessarily this state's valid actions" in text and "--log-dir" in text


def test_inspect_computes_the_agents_q_v_and_advantage(known):
    mem, key = known
    out = json.loads(_ok("memory", "inspect", "--memory", str(mem), "--state", key, "--action", "Jump", "--json",
                         "--q-estimate", "mean", "--beta", "3").stdout)
    assert len(out["neighbours"]) == 4 and out["value"] == pytest.approx(1.5)
    rows = {a["action"]: a for a in out["actions"]}
    assert rows["open door"]["q"] == pytest.approx(5.0) and rows["open door"]["advantage"] == pytest.approx(3.5)
    assert rows["north"]["q"] == pytest.approx(0.5) and rows["north"]["count"] == 2
    assert rows["wait"]["advantage"] == pytest.approx(-1.5)
    assert rows["jump"]["count"] == 0 and rows["jump"]["q"] is None and rows["jump"]["advantage"] == 0
    # Ã = A / max|A|, and the prior is multiplied by exp(β·Ã)
    assert rows["open door"]["normalized"] == pytest.approx(1.0)
    assert rows["wait"]["normalized"] == pytest.approx(-1.5 / 3.5)
    assert rows["open door"]["weight"] == pytest.approx(np.exp(3.0))
    assert [a["action"] for a in out["actions"]][0] == "open door"
    # --q-estimate max: Q̂(north) is its best return (1), not the mean (0.5); V̂ stays the mean
    best = json.loads(_ok("memory", "inspect", "--memory", str(mem), "--state", key, "--q-estimate", "max",
                          "--json").stdout)
    rows = {a["action"]: a for a in best["actions"]}
    assert best["value"] == pytest.approx(1.5) and best["params"]["q_estimate"] == "max"
    assert rows["north"]["q"] == pytest.approx(1.0) and rows["north"]["advantage"] == pytest.approx(-0.5)
    # --unseen-q optimistic values an untried action from max(V̂, 0): with V̂ = 1.5 ≥ 0 that is V̂ itself;
    # --unseen-q zero from 0, so A = −V̂
    for start, advantage in (("optimistic", 0.0), ("zero", -1.5)):
        opt = json.loads(_ok("memory", "inspect", "--memory", str(mem), "--state", key, "--action", "jump",
                             "--unseen-q", start, "--json").stdout)
        assert opt["params"]["unseen_q"] == start
        assert {a["action"]: a for a in opt["actions"]}["jump"]["advantage"] == pytest.approx(advantage)
    # the similarity threshold applies as in `play`
    none = json.loads(_ok("memory", "inspect", "--memory", str(mem), "--state", "location: cave | nothing alike",
                          "--min-similarity", "0.9", "--json").stdout)
    assert none["neighbours"] == [] and none["actions"] == []
    assert "Q̂" in _ok("memory", "inspect", "--memory", str(mem), "--state", key).stdout


def test_inspect_avoid_deaths_values_an_action_by_a_death_in_the_same_place(tmp_path):
    """`memory inspect --avoid-deaths`: "jump" killed on the bridge once (a state whose wizard text keeps it out of the
    ANN neighbours); the bridge's own steps never took it, so it is valued by that death, as `play --avoid-deaths`."""
    emb = HashedNgramEmbedder()
    bridge = "location: foot bridge | inventory: nothing | score: 0 | foot bridge. a wooden bridge over a ravine"
    wizard = ("location: foot bridge | inventory: nothing | score: 0 | a strange little man in a long cloak appears, draws"
              " forth his wand and waves it in your direction; it begins to glow with a faint blue glow")
    with MemoryStore(tmp_path, emb) as store:
        store.write_episode(EpisodeRecord(uuid="ok", game="zork2", score=0, steps=1, params={"max_steps": 1}),
                            [StepRecord(0, bridge, emb.embed(bridge), "north", 0.0, 2.0, world_hash="W1")])
        store.write_episode(EpisodeRecord(uuid="died", game="zork2", score=-10, steps=1, params={"max_steps": 60}),
                            [StepRecord(0, wizard, emb.embed(wizard), "jump", -20.0, -20.0, world_hash="W2")])
    args = ("memory", "inspect", "--memory", str(tmp_path), "--state", bridge, "--action", "jump", "--json",
            "--min-similarity", "0.6")
    plain, avoid = (json.loads(_ok(*args, *flag).stdout) for flag in ((), ("--avoid-deaths",)))
    assert [n["action"] for n in plain["neighbours"]] == ["north"]
    assert {a["action"]: (a["count"], a["q"], a["backed_off"]) for a in plain["actions"]}["jump"] == (0, None, False)
    rows = {a["action"]: a for a in avoid["actions"]}
    assert (rows["jump"]["count"], rows["jump"]["q"], rows["jump"]["backed_off"]) == (1, -20.0, True)
    assert rows["jump"]["advantage"] == pytest.approx(-22.0) and rows["jump"]["normalized"] == pytest.approx(-1.0)
    assert avoid["params"]["avoid_deaths"] is True and plain["params"]["avoid_deaths"] is False


def test_inspect_avoid_deaths_own_pools_a_world_states_own_survival_with_a_death_in_its_place(tmp_path):
    """`memory inspect --step --avoid-deaths-own`: "north" from the bridge's stored world state W1 led on (G = 2); the
    same move from the same place in another world state W2 met the grue (G = −20). `--avoid-deaths` leaves "north" to
    W1's own step; `--avoid-deaths-own` counts both as chance outcomes: Q̂ = (2 − 20) / 2, backed off."""
    emb = HashedNgramEmbedder()
    bridge = "location: foot bridge | inventory: nothing | score: 0 | foot bridge. a wooden bridge over a ravine"
    north = "location: path near stream | inventory: nothing | score: 0 | path near stream"
    dark = "location: foot bridge | inventory: nothing | score: 0 | it is pitch black. you are likely to be eaten by a grue"
    with MemoryStore(tmp_path, emb) as store:
        store.write_episode(EpisodeRecord(uuid="ok", game="zork2", score=0, steps=2, params={"max_steps": 2}),
                            [StepRecord(0, bridge, emb.embed(bridge), "north", 0.0, 2.0, world_hash="W1"),
                             StepRecord(1, north, emb.embed(north), "wait", 4.0, 4.0, world_hash="W3")])
        store.write_episode(EpisodeRecord(uuid="died", game="zork2", score=-10, steps=1, params={"max_steps": 60}),
                            [StepRecord(0, dark, emb.embed(dark), "north", -20.0, -20.0, world_hash="W2")])
    args = ("memory", "inspect", "--memory", str(tmp_path), "--step", "ok:0", "--json", "--exploration", "none")
    own, pooled = ({a["action"]: a for a in json.loads(_ok(*args, flag).stdout)["actions"]}
                   for flag in ("--avoid-deaths", "--avoid-deaths-own"))
    assert (own["north"]["count"], own["north"]["q"], own["north"]["backed_off"]) == (1, 2.0, False)
    assert (pooled["north"]["count"], pooled["north"]["backed_off"]) == (2, True)
    assert pooled["north"]["q"] == pytest.approx(-9.0)


@pytest.mark.slow
def test_export_import_round_trip_without_duplicates(played, tmp_path):
    mem, _ = played
    before = _digest(mem)
    dump = tmp_path / "memory.jsonl.gz"
    _ok("memory", "export", str(dump), "--memory", str(mem))
    assert _digest(mem) == before  # exporting changes nothing
    other = tmp_path / "copy"
    first = _ok("memory", "import", str(dump), "--memory", str(other)).stdout
    with MemoryStore(mem, HashedNgramEmbedder(), writable=False) as store:
        n_steps = store.count_steps()
    assert "imported 4 new episodes" in first and f"({n_steps} steps)" in first
    second = _ok("memory", "import", str(dump), "--memory", str(other)).stdout
    assert "imported 0 new episodes" in second and "4 were already stored" in second
    a = json.loads(_ok("memory", "stats", "--memory", str(mem), "--json").stdout)["games"]
    b = json.loads(_ok("memory", "stats", "--memory", str(other), "--json").stdout)["games"]
    strip = lambda games: [{k: v for k, v in g.items() if k not in ("index", "data_bytes")} for g in games]  # noqa: E731
    assert strip(a) == strip(b)
    assert [g["index"]["count"] for g in b] == [g["steps"] for g in b]
    # the imported memory answers a query exactly like the original
    q = ["memory", "inspect", "--step", "1:2", "--json"]
    orig = json.loads(_ok(*q, "--memory", str(mem)).stdout)
    copy = json.loads(_ok(*q, "--memory", str(other)).stdout)
    assert [(n["action"], round(n["similarity"], 5), n["return"]) for n in orig["neighbours"]] == \
           [(n["action"], round(n["similarity"], 5), n["return"]) for n in copy["neighbours"]]
    # a second file with one more episode adds only that one
    plain = tmp_path / "memory.jsonl"
    _ok("memory", "export", str(plain), "--memory", str(mem), "--game", "detective")
    assert "imported 0 new episodes" in _ok("memory", "import", str(plain), "--memory", str(other)).stdout


@pytest.mark.slow
def test_read_only_commands_change_nothing(played, tmp_path):
    mem, episodes = played
    before = _digest(mem)
    for args in (["stats"], ["list"], ["inspect"], ["inspect", "--step", "1:1"], ["check"],
                 ["prune", "--keep-last", "1", "--dry-run"], ["prune", "--keep-last", "1"], ["clear"],
                 ["stats", "--game", "nope"], ["inspect", "--step", "999:0"]):
        run_cli("memory", *args, "--memory", str(mem))
    assert _digest(mem) == before


@pytest.mark.slow
def test_prune_and_clear(played, tmp_path):
    mem = tmp_path / "mem"
    shutil.copytree(played[0], mem)
    _fails("memory", "prune", "--memory", str(mem), "--keep-last", "1", message="refusing without --yes")
    _fails("memory", "prune", "--memory", str(mem), message="exactly one of")
    assert "would delete 2 episodes" in _ok("memory", "prune", "--memory", str(mem), "--game", "zork1", "--keep-last", "1", "--dry-run").stdout
    _ok("memory", "prune", "--memory", str(mem), "--game", "zork1", "--keep-last", "1", "--yes")
    rows = [json.loads(x) for x in _ok("memory", "list", "--memory", str(mem), "--json").stdout.splitlines()]
    assert [r["game"] for r in rows] == ["zork1", "detective"] and rows[0]["uuid"] == played[1][-1]["uuid"]
    check = json.loads(_ok("memory", "check", "--memory", str(mem), "--json").stdout)["indexes"]
    assert check["zork1"] == {"rows": 8, "indexed": 8, "missing": 0, "stale": 0}
    _ok("memory", "prune", "--memory", str(mem), "--episode", rows[1]["uuid"][:8], "--yes")
    assert not (mem / "index" / "detective.hnsw").exists()
    _ok("memory", "prune", "--memory", str(mem), "--before", "2999-01-01", "--yes")
    _fails("memory", "list", "--memory", str(mem), message="no episodes yet")
    # clear (of one game) after a fresh play
    _ok("play", "zork1", "--max-steps", "3", "--json", "--memory", str(mem))
    _ok("play", "detective", "--max-steps", "3", "--json", "--memory", str(mem))
    _ok("memory", "clear", "--memory", str(mem), "--game", "zork1", "--yes")
    stats = json.loads(_ok("memory", "stats", "--memory", str(mem), "--json").stdout)
    assert [g["game"] for g in stats["games"]] == ["detective"] and not (mem / "index" / "zork1.hnsw").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["stats", "--game", "nope"], "no game 'nope'"),
        (["inspect", "--step", "99:0"], "no episode '99'"),
        (["inspect", "--step", "ep0:7"], "has no step 7"),
        (["inspect", "--step", "banana"], "--step must be EPISODE:STEP"),
        (["inspect", "--state", "x", "--exploration", "wild"], "--exploration must be paper, ucb, puct or none, got 'wild'"),
        (["inspect", "--state", "x", "--exploration", "puct"], "--exploration puct weighs its bonus by the model's prior"),
        (["inspect", "--state", "x", "--gamma", "2"], "--gamma must be in [0, 1], got 2.0"),
        (["inspect", "--state", "x", "--returns", "td"], "--returns must be mc or backup, got 'td'"),
        (["inspect", "--state", "x", "--k", "0"], "--k must be at least 1, got 0"),
        (["prune", "--episode", "nope", "--yes"], "no episode 'nope'"),
        (["prune", "--before", "last tuesday", "--yes"], "--before must be an ISO date"),
        (["list", "--limit", "-1"], "--limit must be >= 0"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(known, args, message):
    mem, _ = known
    before = _digest(mem)
    _fails("memory", *args, "--memory", str(mem), message=message)
    assert _digest(mem) == before


def test_missing_memory_and_bad_import_files(known, tmp_path):
    mem, _ = known
    missing = tmp_path / "no-such-memory"
    _fails("memory", "stats", "--memory", str(missing), message="no memory at")
    assert not missing.exists()
    before = _digest(mem)
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("this is not json\n")
    _fails("memory", "import", str(garbage), "--memory", str(mem), message="not a jitrl memory export")
    _fails("memory", "import", str(tmp_path / "absent.jsonl"), "--memory", str(mem), message="no such file")
    # an export made with another embedder dimension is refused, and nothing is written
    dump = tmp_path / "toy.jsonl"
    _ok("memory", "export", str(dump), "--memory", str(mem))
    lines = dump.read_text().splitlines()
    header = json.loads(lines[0])
    header["dim"] = 128
    wrong_dim = tmp_path / "dim128.jsonl"
    wrong_dim.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    _fails("memory", "import", str(wrong_dim), "--memory", str(mem), message="(dim 128)")
    # a broken episode line anywhere rejects the whole file
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines[:2] + ['{"episode": {"uuid": "x"}}']) + "\n")
    _fails("memory", "import", str(broken), "--memory", str(tmp_path / "fresh"), message="line 3: malformed episode")
    assert not (tmp_path / "fresh").exists()
    _fails("memory", "export", str(dump), "--memory", str(mem), message="exists; pass --force")
    assert _digest(mem) == before


def test_episode_references_with_all_digit_uuid_prefixes(tmp_path):
    # uuids are hex: about 2% of 8-character prefixes are all digits; an id is tried first, then the prefix
    emb = HashedNgramEmbedder()
    key = "location: hall | inventory: | score: 0 | a hall"
    uuids = ["38320297aa", "38320297bb", "2bcd"]
    with MemoryStore(tmp_path / "mem", emb) as store:
        for u in uuids:
            store.write_episode(EpisodeRecord(uuid=u, game="toy", score=0.0, steps=1),
                                [StepRecord(step=0, state_key=key, embedding=emb.embed(key), action="wait", reward=0.0, ret=0.0)])
    mem = str(tmp_path / "mem")
    step = json.loads(_ok("memory", "inspect", "--memory", mem, "--step", "38320297a:0", "--json").stdout)
    assert step["source"] == "step 1:0"
    assert json.loads(_ok("memory", "inspect", "--memory", mem, "--step", "2:0", "--json").stdout)["source"] == "step 2:0"
    _fails("memory", "inspect", "--memory", mem, "--step", "38320297:0", message="episode prefix '38320297' is ambiguous")
    _fails("memory", "prune", "--memory", mem, "--episode", "38320297", "--yes", message="is ambiguous")
    _fails("memory", "prune", "--memory", mem, "--episode", "3832_", "--yes", message="no episode '3832_'")
    _ok("memory", "prune", "--memory", mem, "--episode", "38320297b", "--yes")  # a digit-led prefix, not id 38320297
    _ok("memory", "prune", "--memory", mem, "--episode", "3", "--yes")  # id 3 ("2bcd"), not a uuid prefix
    rows = [json.loads(x) for x in _ok("memory", "list", "--memory", mem, "--json").stdout.splitlines()]
    assert [r["uuid"] for r in rows] == ["38320297aa"]
