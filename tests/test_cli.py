"""`jitrl play` end to end through the real CLI, and its one-line errors."""

import json
import math
import sqlite3

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_play_two_episodes_json_and_memory(tmp_path):
    mem = tmp_path / "mem"
    logs = tmp_path / "logs"
    proc = run_cli("play", "zork1", "--episodes", "2", "--max-steps", "15", "--json", "--memory", str(mem),
                   "--log-dir", str(logs))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    episodes = [json.loads(line) for line in lines]
    assert [e["episode"] for e in episodes] == [1, 2]
    # the game commands' measured defaults (bench/RESULTS.md, "Choosing the defaults")
    assert {k: episodes[0]["params"][k] for k in ("beta", "gamma", "k", "exploration", "q_estimate", "exact_match",
                                                  "avoid_cycles", "fill_neighbours", "unseen_q", "prior",
                                                  "state_hash", "backoff_states")} == {
        "beta": 30.0, "gamma": 0.95, "k": 50, "exploration": "ucb", "q_estimate": "expectimax", "exact_match": True,
        "avoid_cycles": True, "fill_neighbours": False, "unseen_q": "value", "prior": "sequence",
        "state_hash": "jericho", "backoff_states": True}
    for e in episodes:
        assert e["steps"] == 15 and e["game"] == "zork1" and e["max_score"] == 350
        assert e["tokens_evaluated"] > 0 and e["seconds_per_step_median"] > 0
        assert set(e["timings_mean"]) >= {"scoring", "retrieval", "env_step", "valid_actions"}
    assert episodes[0]["retrieval_steps"] == 0  # empty memory
    assert episodes[1]["retrieval_steps"] > 0  # the second episode found the first one's steps
    with sqlite3.connect(mem / "memory.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM steps WHERE game='zork1'").fetchone()[0] == 30
        assert db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 2
    step_files = sorted(logs.glob("zork1-*.jsonl"))
    assert len(step_files) == 2
    rows = [json.loads(x) for x in step_files[1].read_text().splitlines()]
    assert len(rows) == 15
    row = rows[0]
    assert {"step", "observation", "candidates", "action", "reward", "new_score", "ret", "timings"} <= set(row)
    assert {"prior", "advantage", "posterior"} <= set(row["candidates"][0])
    assert abs(sum(c["posterior"] for c in row["candidates"]) - 1) < 1e-6


@pytest.mark.slow
def test_no_learn_leaves_memory_untouched(tmp_path):
    mem = tmp_path / "mem"
    proc = run_cli("play", "zork1", "--max-steps", "5", "--json", "--no-learn", "--memory", str(mem), "--no-exact-match")
    assert proc.returncode == 0, proc.stderr
    e = json.loads(proc.stdout)
    assert e["params"]["beta"] == 0 and e["episode_id"] is None and e["memory_steps"] == 0
    assert e["params"]["exact_match"] is False
    assert not mem.exists()  # never opened: a read-only or damaged memory cannot stop the static baseline


@pytest.mark.slow
def test_play_with_the_constrained_prior(tmp_path):
    logs = tmp_path / "logs"
    proc = run_cli("play", "zork1", "--max-steps", "8", "--json", "--memory", str(tmp_path / "mem"),
                   "--log-dir", str(logs), "--prior", "constrained")
    assert proc.returncode == 0, proc.stderr
    e = json.loads(proc.stdout)
    assert e["params"]["prior"] == "constrained" and e["steps"] == 8
    rows = [json.loads(x) for x in next(logs.glob("zork1-*.jsonl")).read_text().splitlines()]
    for row in rows:
        # the constrained prior is a distribution over the candidates before any renormalising
        # (the sequence prior's exp(z) sums to far less: it leaves mass on every other string)
        assert sum(math.exp(c["prior_logit"]) for c in row["candidates"]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.slow
def test_play_with_the_unordered_state_hash(tmp_path):
    mem = tmp_path / "mem"
    proc = run_cli("play", "zork1", "--max-steps", "3", "--json", "--memory", str(mem), "--state-hash", "unordered")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["params"]["state_hash"] == "unordered"
    with sqlite3.connect(mem / "memory.sqlite") as db:
        hashes = [r[0] for r in db.execute("SELECT world_hash FROM steps")]
    assert len(hashes) == 3 and all(h.startswith("u:") for h in hashes)  # never equal to one of Jericho's hashes


@pytest.mark.parametrize(
    "args, message",
    [
        (["play", "nosuchgame"], "unknown game 'nosuchgame'"),
        (["play", "zork1", "--model", "/nonexistent/model.gguf"], "model file not found"),
        (["play", "zork1", "--episodes", "0"], "--episodes must be at least 1"),
        (["play", "zork1", "--gamma", "2"], "--gamma must be in [0, 1]"),
        (["play", "zork1", "--exploration", "wild"], "--exploration must be"),
        (["play", "zork1", "--q-estimate", "median"], "--q-estimate must be mean, max or expectimax"),
        (["play", "zork1", "--step-rewards", "human"], "--step-rewards must be env, llm or both"),
        (["play", "zork1", "--prior", "uniform"], "--prior must be sequence or constrained"),
        (["play", "zork1", "--state-hash", "tree"], "--state-hash must be jericho, unordered or local"),
        (["play", "zork1", "--episodes", "many"], "Invalid value for '--episodes'"),
        (["play", "/tmp/definitely/missing.z5"], "story file not found"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, message, tmp_path):
    proc = run_cli(*args, "--memory", str(tmp_path / "m"))
    assert proc.returncode != 0
    assert proc.stdout == ""
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "m").exists()  # nothing was created


def test_model_that_is_not_gguf(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model at all")
    proc = run_cli("play", "zork1", "--model", str(fake), "--memory", str(tmp_path / "m"))
    assert proc.returncode == 2 and "is not a GGUF model file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_lists_every_option_with_defaults():
    proc = run_cli("play", "--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0
    for option in ["--episodes", "--max-steps", "--model", "--memory", "--beta", "--gamma", "--k", "--temperature",
                   "--seed", "--greedy", "--no-learn", "--json", "--log-dir", "--rom-dir"]:
        assert option in proc.stdout, option
    assert "default: 50" in proc.stdout and "default: 0.5" in proc.stdout and "default: 30.0" in proc.stdout
    assert "--no-exact-match" in proc.stdout and "--no-avoid-cycles" in proc.stdout and "--fill-neighbours" in proc.stdout


@pytest.mark.parametrize("command, spec, defaults", [
    ("play", "GAME_POLICY", ["default: 30.0", "default: 0.95", "default: sequence"]),
    ("eval", "GAME_POLICY", ["default: 30.0", "default: 0.95", "β of the jitrl arm"]),
    ("web", "WEB_POLICY", ["default: 10.0", "default: 0.5", "default: paper", "--backoff-actions"]),
])
def test_every_command_lists_its_learning_options_in_one_panel(command, spec, defaults):
    from jitrl_cli.commands import options

    proc = run_cli(command, "--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    learning = proc.stdout.split(options.POLICY_PANEL, 1)[1]  # the panel comes after the command's own options
    for name in getattr(options, spec):
        assert "--" + name.replace("_", "-") in learning, name
    for text in defaults:
        assert text in learning, text


@pytest.mark.slow
def test_novelty_and_exact_match_shape_the_stored_returns(tmp_path):
    mem = tmp_path / "mem"
    proc = run_cli("play", "zork1", "--episodes", "2", "--max-steps", "6", "--json", "--memory", str(mem),
                   "--novelty", "1", "--exact-match", "--gamma", "0.5")
    assert proc.returncode == 0, proc.stderr
    episodes = [json.loads(x) for x in proc.stdout.splitlines()]
    assert all(e["params"]["novelty"] == 1 and e["params"]["exact_match"] for e in episodes)
    assert episodes[1]["retrieval_steps"] > 0
    with sqlite3.connect(mem / "memory.sqlite") as db:
        rewards = [r[0] for r in db.execute("SELECT reward FROM steps WHERE episode_id = 1 ORDER BY step")]
    # zork1 gives no points in 6 steps, so every reward is the bonus: 1 for a new state, less for revisits
    assert rewards[0] == pytest.approx(1.0) and all(0 < r <= 1.0 for r in rewards)


@pytest.mark.slow
def test_llm_step_rewards_replace_or_join_the_game_rewards(tmp_path):
    logs = tmp_path / "logs"
    for mode in ("llm", "both"):
        mem = tmp_path / mode
        proc = run_cli("play", "zork1", "--episodes", "1", "--max-steps", "5", "--json", "--memory", str(mem),
                       "--step-rewards", mode, "--log-dir", str(logs / mode), "--gamma", "0.5")
        assert proc.returncode == 0, proc.stderr
        e = json.loads(proc.stdout)
        assert e["params"]["step_rewards"] == mode and e["reflection_seconds"] > 0
        rows = [json.loads(x) for f in sorted((logs / mode).glob("*.jsonl")) for x in f.read_text().splitlines()]
        judged = [r["llm_reward"] for r in rows]
        game = [r["new_score"] - r["score"] for r in rows]
        assert len(judged) == 5 and all(-1 < j < 1 for j in judged) and len(set(judged)) > 1
        with sqlite3.connect(mem / "memory.sqlite") as db:
            stored = [r for r in db.execute("SELECT reward, ret FROM steps ORDER BY step")]
        expected = judged if mode == "llm" else [j + g for j, g in zip(judged, game)]
        assert [r for r, _ in stored] == pytest.approx(expected)
        # the returns are the discounted sums of those rewards
        assert stored[3][1] == pytest.approx(expected[3] + 0.5 * expected[4])


@pytest.mark.slow
def test_max_q_estimate_is_recorded_and_used(tmp_path):
    mem = tmp_path / "mem"
    proc = run_cli("play", "zork1", "--episodes", "2", "--max-steps", "4", "--json", "--memory", str(mem),
                   "--q-estimate", "max", "--exact-match")
    assert proc.returncode == 0, proc.stderr
    episodes = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [e["params"]["q_estimate"] for e in episodes] == ["max", "max"] and episodes[1]["retrieval_steps"] > 0


def _cycles_closed_again(mem, logs):
    """Steps that took an action which, earlier in the episode, had led from the same world state (at the same
    score) straight back into a state already visited, while a candidate that had not was available."""
    with sqlite3.connect(mem / "memory.sqlite") as db:
        hashes = [h for (h,) in db.execute("SELECT world_hash FROM steps ORDER BY step")]
    rows = [json.loads(x) for f in sorted(logs.glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert len(rows) == len(hashes) and all(hashes)
    states = [(h, r["score"]) for h, r in zip(hashes, rows)]
    again, closing = 0, {}
    for t, (state, row) in enumerate(zip(states, rows)):
        closed = closing.get(state, set())
        again += row["action"] in closed and any(c["action"] not in closed for c in row["candidates"])
        if t + 1 < len(states) and states[t + 1] in states[: t + 1]:
            closing.setdefault(state, set()).add(row["action"])
    return again


@pytest.mark.slow
def test_avoid_cycles_stops_closing_the_same_cycle_again(tmp_path):
    # no exploration bonus and an empty memory: the posterior is the prior, which wanders in circles
    counts = {}
    for flag in ("--no-avoid-cycles", "--avoid-cycles"):
        mem, logs = tmp_path / flag / "mem", tmp_path / flag / "logs"
        proc = run_cli("play", "zork1", "--max-steps", "40", "--json", "--memory", str(mem), "--log-dir", str(logs),
                       "--exploration", "none", flag)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["params"]["avoid_cycles"] is (flag == "--avoid-cycles")
        counts[flag] = _cycles_closed_again(mem, logs)
    assert counts["--no-avoid-cycles"] > 0 and counts["--avoid-cycles"] == 0, counts
