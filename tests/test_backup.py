"""The value backup over the remembered transitions (`--returns backup`): hand-made graphs with
known values, then real zork1 episodes in a real memory, through `memory inspect` and `play`."""

import json
import shutil

import pytest

from adapters.jericho_env import JerichoEnv
from jitrl_cli.core.backup import backed_up_returns
from jitrl_cli.core.returns import discounted_returns, step_rewards
from adapters.state_key import build_state_key
from memories.embedding import get_embedder
from memories.store import EpisodeRecord, MemoryStore, StepRecord
from tests.conftest import run_cli


def rows(*episodes):
    """Transition rows (id, episode, hash, action, reward, MC return) for episodes given as
    [(hash, action, reward), …], with γ = 0.5 Monte Carlo returns."""
    out, next_id = [], 1
    for e, steps in enumerate(episodes, start=1):
        returns = discounted_returns([r for _, _, r in steps], 0.5)
        for (h, a, r), g in zip(steps, returns):
            out.append((next_id, e, h, a, r, g))
            next_id += 1
    return out


def test_backup_stitches_what_another_episode_learnt_after_the_same_state():
    # episode 1 reaches s1 and stops with nothing; episode 2 reaches s1 from elsewhere and scores 10 there
    t = rows([("s0", "a", 0.0), ("s1", "x", 0.0)], [("s2", "y", 0.0), ("s1", "z", 10.0)])
    mc = {r[0]: r[5] for r in t}
    backed = backed_up_returns(t, 0.5)
    assert mc[1] == 0.0 and backed[1] == pytest.approx(0.5 * 10.0)  # Q(s0,a) = γ·V(s1) = γ·Q(s1,z)
    assert backed[2] == pytest.approx(0.0) and backed[4] == pytest.approx(10.0)
    assert backed[3] == pytest.approx(5.0)


def test_backup_discounts_detours_instead_of_crediting_them():
    # s0 -a-> s1 -b-> s0 -c-> +10: MC credits the loop's first move with γ²·10; so does the backup,
    # but the backup also knows that from s1 the best is b (back to s0), and that c from s0 is worth 10
    t = rows([("s0", "a", 0.0), ("s1", "b", 0.0), ("s0", "c", 10.0)])
    backed = backed_up_returns(t, 0.5)
    assert backed[3] == pytest.approx(10.0)
    assert backed[2] == pytest.approx(5.0) and backed[1] == pytest.approx(2.5)
    # a second episode shows a cycle that is never left: its steps are worth only what leaving gives
    t = rows([("s0", "a", 0.0), ("s1", "b", 0.0), ("s0", "a", 0.0), ("s1", "b", 0.0), ("s0", "c", 10.0)])
    backed = backed_up_returns(t, 0.5)
    assert backed[1] == pytest.approx(backed[3]) == pytest.approx(2.5)
    assert t[0][5] == pytest.approx(0.625)  # the MC return of the first move depends on how long it looped


def test_chancy_outcomes_are_averaged_and_the_best_action_backs_up():
    t = rows([("s0", "fight", 10.0)], [("s0", "fight", -10.0)], [("s0", "wait", 1.0)])
    backed = backed_up_returns(t, 0.9)
    assert backed[1] == pytest.approx(0.0) and backed[2] == pytest.approx(0.0) and backed[3] == pytest.approx(1.0)
    # actions match after normalisation
    t = rows([("s0", "Open  Door", 4.0)], [("s0", "open door", 0.0)])
    assert backed_up_returns(t, 0.5)[2] == pytest.approx(2.0)


def test_steps_without_world_hash_keep_their_monte_carlo_return():
    t = rows([(None, "a", 0.0), (None, "b", 3.0)], [("s0", "c", 1.0), (None, "d", 2.0)])
    backed = backed_up_returns(t, 0.5)
    assert backed == {r[0]: r[5] for r in t}
    with pytest.raises(ValueError):
        backed_up_returns(t, 1.5)
    assert backed_up_returns([], 0.5) == {}


def _play_script(env, embedder, actions, gamma):
    """Real zork1 steps for a scripted action list, as the agent would store them."""
    obs, info = env.reset()
    records, scores = [], []
    for t, action in enumerate(actions):
        key = build_state_key(info.get("location"), info.get("inventory", []), info.get("score"), obs)
        records.append(StepRecord(step=t, state_key=key, embedding=embedder.embed(key), action=action, reward=0.0,
                                  ret=0.0, world_hash=info["state_hash"], observation=obs))
        obs, _, _, _, info = env.step(action)
        scores.append(float(info["score"]))
    rewards = step_rewards(scores)
    for rec, r, g in zip(records, rewards, discounted_returns(rewards, gamma)):
        rec.reward, rec.ret, rec.score = r, g, None
    return records, scores[-1]


@pytest.fixture(scope="module")
def stitched(tmp_path_factory, zork1):
    """A real zork1 memory: episode 1 goes south, east to Behind House, then north (0 points);
    episode 2 goes north, east to the same Behind House, opens the window and climbs in (+10)."""
    mem = tmp_path_factory.mktemp("stitched") / "mem"
    env = JerichoEnv(zork1)
    embedder = get_embedder()
    try:
        with MemoryStore(mem, embedder) as store:
            for i, script in enumerate([["south", "east", "north"], ["north", "east", "open window", "west"]]):
                steps, score = _play_script(env, embedder, script, 0.5)
                store.write_episode(EpisodeRecord(uuid=f"scripted{i}", game="zork1", score=score, steps=len(steps)), steps)
            hashes = [r[2] for r in store.transitions("zork1")]
    finally:
        env.close()
    assert hashes[2] == hashes[5]  # Behind House is the same world state by either route
    return mem


@pytest.mark.slow
def test_inspect_shows_the_backed_up_value_of_a_move_whose_own_episode_scored_nothing(stitched):
    def q_of(*extra):
        proc = run_cli("memory", "inspect", "--memory", str(stitched), "--step", "1:0", "--json", "--k", "2", *extra)
        assert proc.returncode == 0, proc.stderr
        return {a["action"]: a["q"] for a in json.loads(proc.stdout)["actions"]}

    assert q_of()["south"] == pytest.approx(0.0)
    # south, east, then episode 2's open window (+0) and west (+10): γ³·10
    assert q_of("--returns", "backup", "--gamma", "0.5")["south"] == pytest.approx(1.25)
    assert q_of("--returns", "backup", "--gamma", "0.9")["south"] == pytest.approx(0.9**3 * 10)


@pytest.mark.slow
def test_play_with_backup_uses_the_backed_up_returns(stitched, tmp_path):
    logs = {}
    for mode in ("mc", "backup"):
        mem = tmp_path / mode
        shutil.copytree(stitched, mem)
        proc = run_cli("play", "zork1", "--episodes", "1", "--max-steps", "1", "--json", "--memory", str(mem),
                       "--exact-match", "--returns", mode, "--gamma", "0.5", "--log-dir", str(tmp_path / f"logs-{mode}"))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["params"]["returns"] == mode
        row = json.loads(next((tmp_path / f"logs-{mode}").glob("*.jsonl")).read_text().splitlines()[0])
        logs[mode] = {c["action"]: c["q"] for c in row["candidates"]}
    assert logs["mc"]["south"] == pytest.approx(0.0)
    assert logs["backup"]["south"] == pytest.approx(1.25)


def test_bad_returns_value_is_one_line(tmp_path):
    for args in (["play", "zork1", "--returns", "td"], ["memory", "inspect", "--memory", str(tmp_path), "--returns", "x"]):
        proc = run_cli(*args)
        assert proc.returncode == 2 and "--returns must be mc or backup" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
