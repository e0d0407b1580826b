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
from pathlib import Path

import pytest

from tests.conftest import run_cli

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
