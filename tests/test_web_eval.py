"""`jitrl eval --suite miniwob --tasks ...` and `jitrl report` on a suite directory: a real tiny run
(real model, real headless Chromium), resumed; the aggregate's arithmetic; one-line errors."""

import json
import time

import numpy as np
import pytest

from jitrl_cli.runs.web_eval import summarize_suite
from memories.embedding import HashedNgramEmbedder
from memories.store import MemoryStore
from tests.conftest import run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TASKS = ["click-button", "enter-text", "click-link"]  # the "a suite eval of 3 tasks × 2 episodes resumes"


def _suite_args(out, *extra):
    return ["eval", "--suite", "miniwob", "--tasks", ",".join(TASKS), "--episodes", "2", "--seeds", "1",
            "--arms", "jitrl,static", "--out", str(out), "--json", *extra]


def _logs(task_dir):
    return {p.stem: [json.loads(x) for x in p.read_text().splitlines()]
            for p in sorted((task_dir / "episodes").glob("*.jsonl"))}


def _line_counts(out):
    return {str(p.relative_to(out)): len(p.read_text().splitlines()) for p in sorted(out.glob("*/episodes/*.jsonl"))}


def _png_ok(path):
    import matplotlib.pyplot as plt

    assert path.read_bytes().startswith(PNG_MAGIC)
    assert plt.imread(path).shape[0] > 100


@pytest.mark.slow
def test_suite_eval_tiny_run_resume_and_report(tmp_path):
    out = tmp_path / "suite"
    t0 = time.monotonic()
    proc = run_cli(*_suite_args(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # --json: the aggregate and nothing else
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["suite"] == "miniwob" and summary["measure"] == "success"
    assert "success rate" in summary["measure_description"]
    assert summary["params"]["tasks"] == TASKS and summary["params"]["max_steps"] == 10  # MiniWoB's default
    assert summary["tasks_missing"] == [] and list(summary["tasks"]) == TASKS
    _png_ok(out / "curve.png")

    task_curves = {}
    for task in TASKS:
        d = out / task
        params = json.loads((d / "run.json").read_text())
        assert params["task"] == task and "tasks" not in params and params["measure"] == "success" and params["page_seed_stride"] == 100_000
        ts = json.loads((d / "summary.json").read_text())
        assert ts["measure"] == "success" and set(ts["arms"]) == {"jitrl", "static"}
        _png_ok(d / "curve.png")
        logs = _logs(d)
        assert set(logs) == {"jitrl-seed0", "static-seed0"}
        for name, rows in logs.items():
            assert [r["episode"] for r in rows] == [1, 2]
            for r in rows:  # the fields of `jitrl web --json`
                assert r["task"] == task and r["suite"] == "miniwob" and r["game"] == "miniwob"
                assert r["success"] == (r["score"] > 0) and -1 <= r["score"] <= 1 and 1 <= r["steps"] <= 10
                assert r["arm"] == name.split("-")[0] and r["blocked_requests"] == 0
        # both arms play the same problem instances (page seed = seed · 100 000 + episode − 1)
        assert [r["goal"] for r in logs["jitrl-seed0"]] == [r["goal"] for r in logs["static-seed0"]]
        assert logs["static-seed0"][1]["params"]["beta"] == 0
        # a suite uses `jitrl web`'s defaults, not the game commands'
        assert {k: params[k] for k in ("beta", "gamma", "k", "exploration", "q_estimate", "exact_match", "avoid_cycles",
                                       "unseen_q", "prior", "history", "abstract_actions", "backoff_actions",
                                       "cautious_after")} == {
            "beta": 10.0, "gamma": 0.5, "k": 10, "exploration": "paper", "q_estimate": "mean", "exact_match": False,
            "avoid_cycles": True, "unseen_q": "pessimistic", "prior": "sequence", "history": 0, "abstract_actions": True,
            "backoff_actions": True, "cautious_after": 0}
        assert not (d / "memory").exists()  # the suite's memory is OUT/memory (the task memory is --task-memory)
        for arm, s in ts["arms"].items():
            successes = [float(r["success"]) for r in logs[f"{arm}-seed0"]]
            assert s["curve_mean"] == successes and s["episodes"] == 2
            row = summary["tasks"][task][arm]
            assert row["average"]["mean"] == pytest.approx(np.mean(successes))
            assert row["final"]["mean"] == successes[-1] and row["last10"]["mean"] == pytest.approx(np.mean(successes))
            assert row["mean_score"] == pytest.approx(np.mean([r["score"] for r in logs[f"{arm}-seed0"]]))
            task_curves.setdefault(arm, []).append(successes)
    # one memory per arm and seed for the whole suite: every task's episodes, recorded with their task
    assert summary["params"]["memory"] == "suite" and not (out / "memory" / "static-seed0").exists()
    with MemoryStore(out / "memory" / "jitrl-seed0", HashedNgramEmbedder(), writable=False) as store:
        stored = dict(store.read("SELECT uuid, params FROM episodes"))
    jitrl_rows = {t: _logs(out / t)["jitrl-seed0"] for t in TASKS}
    assert set(stored) == {r["uuid"] for rows in jitrl_rows.values() for r in rows}
    assert {json.loads(stored[r["uuid"]])["task"] for r in jitrl_rows["enter-text"]} == {"enter-text"}
    # enter-text (second) can retrieve only click-button's episodes in its first episode
    first = jitrl_rows["enter-text"][0]
    assert first["cross_task_fraction"] == (1.0 if first["retrieval_steps"] else None)
    assert jitrl_rows["click-button"][0]["cross_task_fraction"] is None  # an empty memory: nothing retrieved
    shares = [summary["tasks"][t]["jitrl"]["cross_task_fraction"] for t in TASKS]
    assert summary["arms"]["jitrl"]["cross_task_fraction"] == pytest.approx(np.mean([x for x in shares if x is not None]))
    assert summary["arms"]["static"]["cross_task_fraction"] is None
    for arm, curves in task_curves.items():  # the mean learning curve over tasks
        a = summary["arms"][arm]
        assert a["tasks"] == TASKS and a["seeds"] == [0] and a["episodes"] == 2
        assert a["curve_mean"] == pytest.approx(np.mean(curves, axis=0).tolist())
        assert a["average"]["mean"] == pytest.approx(np.mean(curves))
        assert a["final"]["mean"] == pytest.approx(np.mean([c[-1] for c in curves]))
    first_run = time.monotonic() - t0

    # re-running the finished suite plays nothing (and starts neither model nor browser)
    counts = _line_counts(out)
    assert sum(counts.values()) == 12  # 3 tasks × 2 arms × 2 episodes
    t0 = time.monotonic()
    again = run_cli(*_suite_args(out))
    assert again.returncode == 0, again.stderr
    assert _line_counts(out) == counts and json.loads(again.stdout)["arms"] == summary["arms"]
    assert time.monotonic() - t0 < 15

    # an episode lost to a kill (memory written, log line not) is replayed on the same problem
    log = out / "enter-text" / "episodes" / "jitrl-seed0.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + lines[1][:20])  # episode 2's line torn mid-write
    resumed = run_cli(*_suite_args(out), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert _line_counts(out) == counts
    rows = _logs(out / "enter-text")["jitrl-seed0"]
    assert rows[0] == json.loads(lines[0]) and rows[1]["goal"] == json.loads(lines[1])["goal"]
    with MemoryStore(out / "memory" / "jitrl-seed0", HashedNgramEmbedder(), writable=False) as store:
        assert {r[0] for r in store.read("SELECT uuid FROM episodes")} == {
            r["uuid"] for t in TASKS for r in _logs(out / t)["jitrl-seed0"]}  # the torn episode's memory is gone

    # `jitrl report` re-renders the aggregate and every task
    for png in (out / "curve.png", out / "click-button" / "curve.png"):
        png.unlink()
    rep = run_cli("report", str(out), "--json")
    assert rep.returncode == 0, rep.stderr
    assert json.loads(rep.stdout) == json.loads((out / "summary.json").read_text())
    _png_ok(out / "curve.png")
    _png_ok(out / "click-button" / "curve.png")
    table = run_cli("report", str(out)).stdout
    assert "click-button" in table and "enter-text" in table and "mean" in table and "success rate" in table
    assert "cross-task" in table
    task_rep = run_cli("report", str(out / "click-button"), "--json")
    assert task_rep.returncode == 0 and json.loads(task_rep.stdout)["measure"] == "success"

    # other settings in the same directory are refused (the task list is a setting of the suite)
    other = run_cli(*[a if a != ",".join(TASKS) else "click-button" for a in _suite_args(out)])
    assert other.returncode == 2 and "holds a run with other settings (tasks)" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    assert first_run < 120


TIMING = {"uuid", "seconds", "seconds_per_step_median", "seconds_per_step_mean", "timings_mean", "memory_write_seconds",
          "reflection_seconds"}


def _untimed(out):
    return {str(p.relative_to(out)): [{k: v for k, v in json.loads(x).items() if k not in TIMING}
                                      for x in p.read_text().splitlines()] for p in sorted(out.glob("*/episodes/*.jsonl"))}


@pytest.mark.slow
def test_suite_with_two_workers_and_task_memories_logs_what_one_process_logs(tmp_path):
    """--workers 2 plays the arm × seed runs in two processes (own browser and model each): the logs are the
    one-process logs. --task-memory gives each task a fresh memory: no neighbour comes from another task.
    --exact-actions reaches the agent."""
    runs = {}
    for name, extra in (("one", []), ("two", ["--workers", "2"])):
        proc = run_cli(*_suite_args(tmp_path / name, "--task-memory", "--exact-actions", "--arms", "jitrl", "--seeds", "2",
                                    *extra), timeout=400)
        assert proc.returncode == 0, proc.stderr
        runs[name] = proc
    one, two = _untimed(tmp_path / "one"), _untimed(tmp_path / "two")
    assert len(one) == 6 and all(len(rows) == 2 for rows in one.values()) and one == two
    assert all(r["cross_task_fraction"] in (None, 0.0) for rows in one.values() for r in rows)
    summary = json.loads(runs["two"].stdout)
    assert summary["params"]["memory"] == "task" and not (tmp_path / "two" / "memory").exists()
    assert summary["params"]["abstract_actions"] is False  # --exact-actions: memory keys actions by their strings
    assert all(r["params"]["abstract_actions"] is False for rows in one.values() for r in rows)
    for task in TASKS:
        with MemoryStore(tmp_path / "two" / task / "memory" / "jitrl-seed1", HashedNgramEmbedder(), writable=False) as store:
            assert len(store.read("SELECT uuid FROM episodes")) == 2
    assert summary["arms"]["jitrl"]["seeds"] == [0, 1]


@pytest.mark.slow
def test_spare_workers_split_a_runs_tasks_and_share_its_one_suite_memory(tmp_path):
    """One run (jitrl, seed 0) and --workers 2: its 3 tasks are dealt out to 2 processes that write the one
    suite memory at once; every episode is logged once and stored once, and the memory checks clean."""
    out = tmp_path / "suite"
    proc = run_cli(*_suite_args(out, "--arms", "jitrl", "--workers", "2"), timeout=400)
    assert proc.returncode == 0, proc.stderr
    logged = {r["uuid"] for t in TASKS for r in _logs(out / t)["jitrl-seed0"]}
    assert len(logged) == 6 and all(len(_logs(out / t)["jitrl-seed0"]) == 2 for t in TASKS)
    memory = out / "memory" / "jitrl-seed0"
    with MemoryStore(memory, HashedNgramEmbedder(), writable=False) as store:
        assert {r[0] for r in store.read("SELECT uuid FROM episodes")} == logged
    check = run_cli("memory", "check", "--memory", str(memory))
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(proc.stdout)["params"]["memory"] == "suite"


def test_shard_jobs_deals_a_runs_tasks_to_the_spare_workers():
    from jitrl_cli.core.config import AgentConfig
    from jitrl_cli.runs.evaluation import make_runs
    from jitrl_cli.runs.web_eval import WebJob, shard_jobs

    runs = make_runs(["jitrl", "static"], 0, 1)
    jobs = [WebJob(run, ("a", "b", "c", "d", "e"), 2, AgentConfig(), None, True) for run in runs]
    assert shard_jobs(jobs, 2) is jobs and shard_jobs(jobs[:1], 1) == jobs[:1]
    shards = shard_jobs(jobs, 5)  # two spare workers per run: 2 shards each (5 // 2)
    assert [(s.run, s.tasks) for s in shards] == [(runs[0], ("a", "c", "e")), (runs[0], ("b", "d")),
                                                 (runs[1], ("a", "c", "e")), (runs[1], ("b", "d"))]
    one = WebJob(runs[0], ("a",), 2, AgentConfig(), None, True)
    assert shard_jobs([one], 8) == [one]  # never more shards than tasks


def _write_log(path, arm, seed, successes, task):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"arm": arm, "seed": seed, "episode": e + 1, "score": 1.0 if s else -1.0, "max_score": 1.0, "success": s,
             "victory": s, "task": task, "uuid": f"{task}{arm}{seed}{e}", "seconds_per_step_median": 0.1}
            for e, s in enumerate(successes)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_suite_summary_arithmetic(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"suite": "miniwob", "tasks": ["a", "b", "c"], "arms": ["jitrl"],
                                                   "episodes": 3, "seeds": 2, "measure": "success"}))
    for task in ("a", "b"):
        (tmp_path / task).mkdir()
        (tmp_path / task / "run.json").write_text(json.dumps({"suite": "miniwob", "task": task, "measure": "success"}))
    _write_log(tmp_path / "a" / "episodes" / "jitrl-seed0.jsonl", "jitrl", 0, [False, True, True], "a")
    _write_log(tmp_path / "a" / "episodes" / "jitrl-seed1.jsonl", "jitrl", 1, [False, False, True], "a")
    _write_log(tmp_path / "b" / "episodes" / "jitrl-seed0.jsonl", "jitrl", 0, [True, True, True], "b")
    _write_log(tmp_path / "b" / "episodes" / "jitrl-seed1.jsonl", "jitrl", 1, [False, True], "b")  # unfinished
    s = summarize_suite(tmp_path)
    assert s["tasks_missing"] == ["c"] and list(s["tasks"]) == ["a", "b"]
    assert s["tasks"]["a"]["jitrl"]["average"] == {"mean": pytest.approx(0.5), "std": pytest.approx(2**0.5 / 6)}  # sample std
    assert s["tasks"]["b"]["jitrl"]["episodes"] == 2  # only episodes every seed finished
    j = s["arms"]["jitrl"]
    # y[seed] = mean over tasks: seed 0 [.5, 1], seed 1 [0, .5] (episode 3 is not finished by b/seed1)
    assert j["episodes"] == 2 and j["tasks"] == ["a", "b"] and j["seeds"] == [0, 1]
    assert j["curve_mean"] == [0.25, 0.75] and j["curve_std"] == pytest.approx([0.25 * 2**0.5] * 2)
    assert j["average"] == {"mean": 0.5, "std": pytest.approx(0.25 * 2**0.5)}
    assert j["final"] == {"mean": 0.75, "std": pytest.approx(0.25 * 2**0.5)}
    assert j["auc"] == pytest.approx(0.5) and j["success_rate"] == 0.5 and j["mean_score"] == 0.0
    # `jitrl report` on a partial suite renders what exists and names what is missing
    rep = run_cli("report", str(tmp_path), "--json")
    assert rep.returncode == 0, rep.stderr
    assert json.loads(rep.stdout)["tasks_missing"] == ["c"] and (tmp_path / "a" / "curve.png").exists()
    assert (tmp_path / "curve.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    "args, message",
    [
        (["zork1", "--suite", "miniwob", "--tasks", "click-button"], "give either GAME (zork1) or --suite"),
        (["--suite", "miniwob"], "--suite miniwob needs --tasks"),
        (["--tasks", "click-button"], "--tasks needs --suite miniwob"),
        ([], "give a GAME (e.g. zork1) or --suite miniwob --tasks"),
        (["--suite", "webarena", "--tasks", "x"], "eval supports only --suite miniwob: WebArena needs live sites"),
        (["--suite", "wob", "--tasks", "click-button"], "--suite must be miniwob, got 'wob'"),
        (["--suite", "miniwob", "--tasks", "click-button,click-nothing"], "unknown MiniWoB task 'click-nothing'"),
        (["--suite", "miniwob", "--tasks", "click-button", "--episodes", "0"], "must be at least 1"),
        (["--suite", "miniwob", "--tasks", "click-button", "--step-rewards", "llm"], "web suites use env"),
        (["zork1", "--task-memory"], "--task-memory applies to web suites"),
        (["zork1", "--exact-actions"], "--exact-actions applies to web suites"),
        (["zork1", "--backoff-actions"], "--backoff-actions/--no-backoff-actions apply to web suites"),
        (["zork1", "--no-backoff-actions"], "--backoff-actions/--no-backoff-actions apply to web suites"),
    ],
)
def test_suite_eval_bad_input_is_one_line(tmp_path, args, message):
    proc = run_cli("eval", *args, "--out", str(tmp_path / "o"), timeout=60)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and proc.stdout == "" and err.startswith("error:") and message in err, err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_report_of_an_empty_suite_is_one_line(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"suite": "miniwob", "tasks": ["click-button"]}))
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.startswith("error: no episode logs")
    assert len(proc.stderr.strip().splitlines()) == 1
