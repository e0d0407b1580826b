"""Episodes in parallel: `eval --workers`, `eval --ray` (a real local Ray cluster) and `play --workers`.

The parallel evals must log exactly what the sequential eval logs (same seeds, same episodes, same actions
in memory); `play --workers` must store every episode whole in one shared memory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jitrl_cli.runs.evaluation import Run, hold_run
from tests.conftest import child_pids, run_cli

TIMING = {"uuid", "seconds", "seconds_per_step_median", "seconds_per_step_mean", "timings_mean", "memory_write_seconds",
          "reflection_seconds"}
# Ray ≥ 2.5x asks clients for a token; a loopback test cluster opts out (README, "Scaling out")
RAY_ENV = dict(os.environ, RAY_AUTH_MODE="disabled")
EVAL = ["eval", "zork1", "--episodes", "2", "--max-steps", "6", "--arms", "jitrl,static", "--seeds", "2", "--json"]


def logged(out: Path) -> dict[str, list[dict]]:
    """Each run's logged episodes without their timings and uuids."""
    return {p.stem: [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in p.read_text().splitlines()]
            for p in sorted((out / "episodes").glob("*.jsonl"))}


def remembered(out: Path) -> dict[str, list[tuple]]:
    """Each learning run's stored steps: (episode, step, action, return)."""
    result = {}
    for db in sorted((out / "memory").glob("*/memory.sqlite")):
        with sqlite3.connect(db) as con:
            result[db.parent.name] = con.execute(
                "SELECT episode_id, step, action, round(ret, 9) FROM steps ORDER BY episode_id, step").fetchall()
    return result


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sequential") / "eval"
    result = run_cli(*EVAL, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.slow
def test_eval_with_two_workers_logs_what_the_sequential_eval_logs(sequential, tmp_path):
    out = tmp_path / "eval"
    result = run_cli(*EVAL, "--out", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert len(logged(out)) == 4 and all(len(v) == 2 for v in logged(out).values())
    assert logged(out) == logged(sequential)
    assert remembered(out) == remembered(sequential) and len(remembered(out)) == 2
    summary, reference = (json.loads((d / "summary.json").read_text()) for d in (out, sequential))
    for arm in ("jitrl", "static"):
        assert summary["arms"][arm]["final"] == reference["arms"][arm]["final"]
        assert summary["arms"][arm]["average"] == reference["arms"][arm]["average"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def ray_cluster(tmp_path):
    """A real Ray head on loopback (`ray start --head`), stopped afterwards."""
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray, "ray is a test dependency"
    port = _free_port()
    env_args = ["--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
                "--include-dashboard", "false", "--disable-usage-stats", "--object-store-memory", str(200 * 2**20)]
    subprocess.run([ray, "start", *env_args], check=True, capture_output=True, timeout=180, env=RAY_ENV)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120, env=RAY_ENV)


@pytest.mark.slow
def test_eval_on_a_ray_cluster_logs_what_the_sequential_eval_logs(sequential, tmp_path, ray_cluster):
    out = tmp_path / "eval"
    # a run another process is playing (its writer lock held): the Ray driver refuses before writing anything
    (out / "episodes").mkdir(parents=True)
    with hold_run(out, Run("static", 1)):
        refused = run_cli(*EVAL, "--out", str(out), "--ray", ray_cluster, env=RAY_ENV)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert any(line.startswith("error:") and "static-seed1 is being played by another jitrl eval" in line
               for line in refused.stderr.splitlines()), refused.stderr
    assert not list((out / "episodes").glob("*.jsonl")) and not (out / "memory").exists()
    result = run_cli(*EVAL, "--out", str(out), "--ray", ray_cluster, env=RAY_ENV)
    assert result.returncode == 0, result.stderr
    assert logged(out) == logged(sequential)
    assert remembered(out) == remembered(sequential)
    again = run_cli(*EVAL, "--out", str(out), "--ray", ray_cluster, env=RAY_ENV)  # resumes: nothing left to play
    assert again.returncode == 0, again.stderr
    assert logged(out) == logged(sequential)


@pytest.mark.slow
def test_play_with_two_workers_stores_every_episode_whole_in_one_memory(tmp_path):
    memory = tmp_path / "memory"
    result = run_cli("play", "zork1", "--workers", "2", "--episodes", "4", "--max-steps", "5", "--json",
                     "--memory", str(memory))
    assert result.returncode == 0, result.stderr
    episodes = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(e["episode"] for e in episodes) == [1, 2, 3, 4]
    with sqlite3.connect(memory / "memory.sqlite") as con:
        rows = con.execute("SELECT e.id, e.steps, count(s.id) FROM episodes e JOIN steps s ON s.episode_id = e.id "
                           "GROUP BY e.id").fetchall()
    assert len(rows) == 4 and all(steps == n == 5 for _, steps, n in rows)
    check = run_cli("memory", "check", "--memory", str(memory))
    assert check.returncode == 0 and "ok" in check.stdout, check.stdout + check.stderr


def test_ray_is_refused_for_web_suites(tmp_path):
    result = run_cli("eval", "--suite", "miniwob", "--tasks", "click-button", "--ray", "local", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "--ray runs game evals" in result.stderr
    assert not (tmp_path / "o").exists()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its new parent to reap it counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:\t", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state not in "ZX"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the workers' parent-death signal is Linux's prctl")
def test_killing_an_eval_ends_its_workers_and_a_second_eval_on_a_run_being_played_is_refused(tmp_path):
    out, log = tmp_path / "eval", tmp_path / "eval" / "episodes" / "jitrl-seed0.jsonl"
    args = ["eval", "zork1", "--episodes", "30", "--max-steps", "40", "--arms", "jitrl", "--seeds", "2",
            "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "jitrl_cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (log.exists() and log.read_bytes().endswith(b"\n")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        # the same directory again while its runs are played: refused in one line, nothing written
        before = log.read_text()
        second = run_cli(*args[:-4], "--workers", "1", "--out", str(out))
        assert second.returncode != 0
        assert any(line.startswith("error:") and "being played by another jitrl eval" in line
                   for line in second.stderr.splitlines()), second.stderr
        assert "Traceback" not in second.stderr
        workers = child_pids(proc.pid)
        assert len(workers) >= 3, workers  # the event queue's manager and two pool workers
        proc.kill()  # SIGKILL: the driver gets no chance to stop them
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)], "workers outlived the killed eval"
    finally:
        if proc.poll() is None:
            proc.kill()
    # each log holds its run's episodes 1, 2, … once each, and the eval resumes from them
    played = 0
    for path in sorted((out / "episodes").glob("*.jsonl")):
        numbers = [json.loads(line)["episode"] for line in path.read_text().splitlines()]
        assert numbers == list(range(1, len(numbers) + 1)), (path.name, numbers)
        played = max(played, len(numbers))
    assert log.read_text().startswith(before)
    resumed = run_cli("eval", "zork1", "--episodes", str(played + 1), *args[4:-2], "--out", str(out), "--force")
    assert resumed.returncode == 0, resumed.stderr
    assert all(len(p.read_text().splitlines()) == played + 1 for p in (out / "episodes").glob("*.jsonl"))
