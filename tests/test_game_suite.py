"""`jitrl eval --games A,B` and `jitrl report` on a games directory: a real tiny run (real Jericho, real model),
killed and resumed; the aggregate's arithmetic; a failing game is reported, not fatal; one-line errors."""

import json
import os
import signal
import sqlite3
import time

import numpy as np
import pytest

from tests.conftest import child_pids, kill_when_logged, run_cli, start_until_logged

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GAMES = ["zork1", "detective"]


def _args(out, games):
    return ["eval", "--games", games, "--episodes", "2", "--max-steps", "5", "--arms", "jitrl,static", "--seeds", "1",
            "--out", str(out), "--json"]


def _logs(game_dir):
    return {p.stem: [json.loads(x) for x in p.read_text().splitlines()]
            for p in sorted((game_dir / "episodes").glob("*.jsonl"))}


@pytest.mark.slow
def test_games_eval_killed_resumed_and_reported(tmp_path):
    out = tmp_path / "games"
    bad = tmp_path / "bad.z5"
    bad.write_bytes(b"not a story file" * 64)  # a game that fails: reported, the others still run
    games = ",".join([*GAMES, str(bad)])
    t0 = time.monotonic()
    kill_when_logged([*_args(out, games)], out / "zork1" / "episodes" / "jitrl-seed0.jsonl")
    partial = _logs(out / "zork1")
    assert 1 <= sum(len(v) for v in partial.values()) < 4 and not (out / "summary.json").exists()
    assert not (out / "detective" / "episodes").exists()

    done = run_cli(*_args(out, games), timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["params"]["games"] == [*GAMES, "bad"] and summary["measure"] == "normalized score"
    assert list(summary["games"]) == GAMES and summary["games_missing"] == []
    assert list(summary["failed"]) == ["bad"] and "not a Z-machine story file" in summary["failed"]["bad"]
    assert "\n" not in summary["failed"]["bad"]
    curves = {}
    for game in GAMES:
        d = out / game
        params = json.loads((d / "run.json").read_text())
        assert params["game"] == game and "games" not in params and params["episodes"] == 2
        logs = _logs(d)
        assert set(logs) == {"jitrl-seed0", "static-seed0"}
        for name, rows in logs.items():
            assert [r["episode"] for r in rows] == [1, 2]
            assert all(0 <= r["valid_actions_timeouts"] <= r["steps"] for r in rows)
            assert all(r["steps"] == 5 or (r["steps"] < 5 and (r["died"] or r["victory"])) for r in rows), rows  # 5 steps unless the game ended
            if game == "zork1":
                assert rows[: len(partial.get(name, []))] == partial.get(name, [])  # finished episodes kept
        gs = json.loads((d / "summary.json").read_text())
        assert (d / "curve.png").read_bytes().startswith(PNG_MAGIC)
        for arm, s in gs["arms"].items():
            row = summary["games"][game][arm]
            assert row["average"] == s["average"] and row["max_score"] == s["max_score"] > 0
            assert row["last10_normalized"]["mean"] == pytest.approx(s["last10"]["mean"] / s["max_score"])
            rows = logs[f"{arm}-seed0"]
            assert row["steps"] == sum(r["steps"] for r in rows) and row["valid_actions_seconds"] > 0
            assert row["valid_actions_timeouts"] == sum(r["valid_actions_timeouts"] for r in rows)
            curves.setdefault(arm, []).append([r["score"] / r["max_score"] for r in rows])
    for arm, c in curves.items():  # the normalized score per episode, mean over games
        a = summary["arms"][arm]
        assert a["games"] == GAMES and a["seeds"] == [0] and a["episodes"] == 2
        assert a["curve_mean"] == pytest.approx(np.mean(c, axis=0).tolist()) and a["curve_std"] == [0, 0]
        assert a["last10"]["mean"] == pytest.approx(np.mean(c))
    assert (out / "curve.png").read_bytes().startswith(PNG_MAGIC)
    first = time.monotonic() - t0

    # a game's directory is a single-game eval directory: `jitrl eval GAME --out OUT/GAME` finds it finished
    before = (out / "detective" / "episodes" / "jitrl-seed0.jsonl").read_bytes()
    single = run_cli("eval", "detective", *_args(out / "detective", games)[3:])
    assert single.returncode == 0, single.stderr
    assert (out / "detective" / "episodes" / "jitrl-seed0.jsonl").read_bytes() == before

    # `jitrl report OUT` re-renders the same aggregate and the plot; the table names every game and the failure
    (out / "curve.png").unlink()
    rep = run_cli("report", str(out), "--json")
    assert rep.returncode == 0, rep.stderr
    assert json.loads(rep.stdout) == summary and (out / "curve.png").read_bytes().startswith(PNG_MAGIC)
    table = run_cli("report", str(out)).stdout
    assert all(w in table for w in ("zork1", "detective", "mean", "failed", "bad", "norm last 10"))
    assert first < 240


@pytest.mark.slow
def test_a_finder_that_times_out_is_reported_not_fatal(tmp_path):
    """With a timeout no real finder meets, every step plays the fallback moves; the episode log counts those steps,
    the game's summary and the games table report them, and the run still finishes."""
    out = tmp_path / "games"
    done = run_cli("eval", "--games", "zork1", "--episodes", "1", "--max-steps", "3", "--arms", "jitrl", "--seeds", "1",
                   "--valid-actions-timeout", "0.0001", "--out", str(out), "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    (row,) = _logs(out / "zork1")["jitrl-seed0"]
    assert row["steps"] == 3 and row["valid_actions_timeouts"] == 3
    s = json.loads(done.stdout)["games"]["zork1"]["jitrl"]
    assert s["steps"] == 3 and s["valid_actions_timeouts"] == 3 and s["valid_actions_seconds"] > 0
    table = run_cli("report", str(out)).stdout
    assert "3 of 3 timed out" in table, table
    single = run_cli("report", str(out / "zork1")).stdout
    assert "3 of 3 timed out" in single, single


TIMING = {"uuid", "seconds", "seconds_per_step_median", "seconds_per_step_mean", "timings_mean", "memory_write_seconds",
          "reflection_seconds"}


def _untimed(game_dir, *also):
    """The logs of a game directory without their timings (and the keys ``also``)."""
    leave = TIMING | set(also)
    return {name: [{k: v for k, v in r.items() if k not in leave} for r in rows] for name, rows in _logs(game_dir).items()}


@pytest.mark.slow
def test_games_eval_with_two_workers_overlaps_games_and_logs_what_one_process_logs(tmp_path):
    """`--games --workers 2` with one run per game: both games' runs are played at once (the old per-game pools
    played detective only after zork1's last episode), a failing game is still reported, and the logs, once
    resumed, are the sequential eval's."""
    out, one = tmp_path / "pool", tmp_path / "one"
    bad = tmp_path / "bad.z5"
    bad.write_bytes(b"not a story file" * 64)
    args = ["--games", f"zork1,{bad},detective", "--episodes", "4", "--max-steps", "5", "--arms", "jitrl", "--seeds", "1",
            "--json"]
    kill_when_logged(["eval", *args, "--workers", "2", "--out", str(out)], out / "detective" / "episodes" / "jitrl-seed0.jsonl")
    assert len(_logs(out / "zork1").get("jitrl-seed0", [])) < 4  # detective began before zork1 ended
    done = run_cli("eval", *args, "--workers", "2", "--out", str(out), timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert list(summary["games"]) == GAMES and list(summary["failed"]) == ["bad"]
    assert "not a Z-machine story file" in summary["failed"]["bad"]
    sequential = run_cli("eval", *args, "--out", str(one), timeout=300)
    assert sequential.returncode == 0, sequential.stderr
    for game in GAMES:
        logged = _logs(out / game)["jitrl-seed0"]
        assert [r["episode"] for r in logged] == [1, 2, 3, 4]
        # an episode stored but not logged when the kill came is deleted on resume and played again under a new
        # row id (SQLite never reuses one), so the memory's episode ids may skip; everything else is the same.
        # The memory holds the logged episodes only, in the log's order (so their ids increase)
        with sqlite3.connect(out / game / "memory" / "jitrl-seed0" / "memory.sqlite") as db:
            stored = db.execute("SELECT id, uuid FROM episodes ORDER BY id").fetchall()
        assert stored == [(r["episode_id"], r["uuid"]) for r in logged]
        assert _untimed(out / game, "episode_id") == _untimed(one / game, "episode_id")


@pytest.mark.slow
def test_a_worker_that_dies_fails_only_the_runs_it_was_playing_with(tmp_path):
    """SIGKILL one pool worker while zork1's two runs play: zork1 is reported failed (both of its runs were in
    flight, and which worker held which is not known) and detective, not started then, is played in a new pool
    (the one pool used to fail every game still in it); a second eval resumes zork1."""
    out = tmp_path / "games"
    args = ["eval", "--games", "zork1,detective", "--episodes", "3", "--max-steps", "5", "--arms", "jitrl", "--seeds",
            "2", "--workers", "2", "--out", str(out), "--json"]
    log = out / "zork1" / "episodes" / "jitrl-seed0.jsonl"
    proc = start_until_logged(args, log)
    try:
        assert log.exists() and log.read_bytes().endswith(b"\n"), "zork1 logged no episode in 300 s"
        workers = [k for k in child_pids(proc.pid) if child_pids(k)]  # a pool worker runs a valid-action finder
        assert workers, "no pool worker with a child process"
        os.kill(workers[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert list(summary["failed"]) == ["zork1"] and "worker process died" in summary["failed"]["zork1"], summary["failed"]
    assert {name: len(rows) for name, rows in _logs(out / "detective").items()} == {"jitrl-seed0": 3, "jitrl-seed1": 3}
    again = run_cli(*args, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["failed"] == {}
    assert {name: len(rows) for name, rows in _logs(out / "zork1").items()} == {"jitrl-seed0": 3, "jitrl-seed1": 3}


def _write_log(path, arm, seed, scores, max_score):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"arm": arm, "seed": seed, "episode": e + 1, "score": s, "max_score": max_score, "uuid": f"{arm}{seed}{e}",
             "seconds_per_step_median": 0.1} for e, s in enumerate(scores)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_games_summary_arithmetic_and_failures(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"games": ["a", "b", "c", "d"], "arms": ["jitrl"], "episodes": 3,
                                                   "seeds": 2, "max_steps": 5}))
    (tmp_path / "failed.json").write_text(json.dumps({"d": "RuntimeError: valid-action finder did not start"}))
    for game in ("a", "b"):
        (tmp_path / game).mkdir()
        (tmp_path / game / "run.json").write_text(json.dumps({"game": game, "episodes": 3}))
    _write_log(tmp_path / "a" / "episodes" / "jitrl-seed0.jsonl", "jitrl", 0, [0, 10, 20], 100)
    _write_log(tmp_path / "a" / "episodes" / "jitrl-seed1.jsonl", "jitrl", 1, [10, 20, 40], 100)
    _write_log(tmp_path / "b" / "episodes" / "jitrl-seed0.jsonl", "jitrl", 0, [5, 10], 10)  # unfinished
    _write_log(tmp_path / "b" / "episodes" / "jitrl-seed1.jsonl", "jitrl", 1, [0, 5, 10], 10)
    rep = run_cli("report", str(tmp_path), "--json")
    assert rep.returncode == 0, rep.stderr
    s = json.loads(rep.stdout)
    assert s == json.loads((tmp_path / "summary.json").read_text()) and (tmp_path / "curve.png").exists()
    assert list(s["games"]) == ["a", "b"] and s["games_missing"] == ["c"]
    assert s["failed"] == {"d": "RuntimeError: valid-action finder did not start"}
    assert s["games"]["a"]["jitrl"]["last10_normalized"]["mean"] == pytest.approx(100 / 6 / 100)
    j = s["arms"]["jitrl"]
    # y[seed] = mean over games of score / max: seed 0 [(0 + .5)/2, (.1 + 1)/2], seed 1 [(.1 + 0)/2, (.2 + .5)/2]
    y = np.array([[0.25, 0.55], [0.05, 0.35]])
    assert j["episodes"] == 2 and j["games"] == ["a", "b"] and j["seeds"] == [0, 1]
    assert j["curve_mean"] == pytest.approx(y.mean(axis=0).tolist())
    assert j["curve_std"] == pytest.approx(y.std(axis=0, ddof=1).tolist())
    assert j["last10"]["mean"] == pytest.approx(y.mean()) and j["final"]["mean"] == pytest.approx(0.45)
    table = run_cli("report", str(tmp_path)).stdout
    assert "valid-action finder did not start" in table and "not started: c" in table


@pytest.mark.parametrize(
    "args, message",
    [
        (["zork1", "--games", "zork1,detective"], "give either GAME (zork1) or --games, not both"),
        (["--games", "zork1", "--suite", "miniwob", "--tasks", "click-button"], "--games and --suite/--tasks are exclusive"),
        (["--games", "zork1,nosuchgame"], "unknown game 'nosuchgame'"),
        (["--games", " , "], "--games must be a comma list"),
    ],
)
def test_games_eval_bad_input_is_one_line(tmp_path, args, message):
    proc = run_cli("eval", *args, "--out", str(tmp_path / "o"), timeout=60)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and proc.stdout == "" and err.startswith("error:") and message in err, err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_games_all_is_every_game_found(tmp_path):
    from jitrl_cli.paths import list_games
    from jitrl_cli.runs.game_suite import game_names

    assert [p.stem for p in game_names("all", None)] == [p.stem for p in list_games()] and len(list_games()) >= 2
    assert [p.stem for p in game_names("zork1, detective,zork1", None)] == ["zork1", "detective"]
