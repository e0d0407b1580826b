"""Check a running inference server against jitrl's protocol: batched vs unbatched log-probs, and s/step by workers.

Usage (on the server's host, after `pip install -e .`):

    python bench/server_check.py --server http://127.0.0.1:8000 --server-api openai --steps 20 --workers 1,8,32

1. Plays ``--steps`` real zork1 steps (the first valid action each time) with the server's tokenizer and scores
   every step's candidates twice: all in one call (batched, as the agent does) and each candidate alone. Prints
   the largest difference in nats per step and overall.
2. For each worker count W: ``jitrl eval zork1 --server ... --workers W --seeds W --episodes 1`` with
   ``--max-steps`` = ``--steps``, and prints seconds per step and steps per second over all workers.
Prints one JSON object at the end (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.jericho_env import JerichoEnv  # noqa: E402
from jitrl_cli.llm.prompt import TranscriptPrompt  # noqa: E402
from jitrl_cli.llm.server import ServerClient, ServerModel, ServerScorer  # noqa: E402
from jitrl_cli.paths import require_game  # noqa: E402


def zork1_walk(tokenize, steps: int, max_tokens: int):
    """``steps`` real zork1 steps, always taking the first valid action: yields (prompt tokens, candidate token
    lists) per step, the transcript prompt built with ``tokenize`` (the server's tokenizer)."""
    env = JerichoEnv(require_game("zork1", None), max_steps=steps + 1)
    prompt = TranscriptPrompt(tokenize, "The following is a transcript of an expert player of Zork I.", max_tokens)
    try:
        obs, info = env.reset()
        prompt.start(obs)
        for _ in range(steps):
            yield prompt.tokens(), [prompt.candidate_tokens(a) for a in info["candidates"]]
            action = info["candidates"][0]
            obs, _, done, _, info = env.step(action)
            if done:
                return
            prompt.append(prompt.candidate_tokens(action), obs)
    finally:
        env.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--server-api", default="openai")
    ap.add_argument("--server-model", default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--workers", default="1,8,32")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    model = ServerModel(ServerClient(args.server), args.server_api, args.server_model, 8192)
    scorer = ServerScorer(model)
    diffs, batched_s, single_s = [], [], []
    for t, (tokens, cands) in enumerate(zork1_walk(model.tokenize, args.steps, 7000)):
        t0 = time.perf_counter()
        batched = scorer.score(tokens, cands).logprobs
        batched_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        alone = np.array([scorer.score(tokens, [c]).logprobs[0] for c in cands])
        single_s.append(time.perf_counter() - t0)
        diffs.append(float(np.abs(batched - alone).max()))
        print(f"step {t}: {len(cands)} candidates, max |batched − alone| {diffs[-1]:.2e} nats, "
              f"{batched_s[-1]:.3f} s batched, {single_s[-1]:.3f} s one by one", flush=True)
    result = {"server": args.server, "api": args.server_api, "model": model.name, "steps": len(diffs),
              "max_diff_nats": max(diffs), "batched_s_per_step": float(np.median(batched_s)),
              "one_by_one_s_per_step": float(np.median(single_s)), "workers": {}}
    scorer.close()
    model.close()
    for w in [int(x) for x in args.workers.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "jitrl_cli", "eval", "zork1", "--server", args.server,
                            "--server-api", args.server_api, *(["--server-model", args.server_model] if args.server_model else []),
                            "--workers", str(w), "--seeds", str(w), "--episodes", "1", "--max-steps", str(args.steps),
                            "--arms", "jitrl", "--out", tmp, "--json"], check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
            logs = [json.loads(line) for p in Path(tmp, "episodes").glob("*.jsonl") for line in p.read_text().splitlines()]
            steps = sum(e["steps"] for e in logs)
            result["workers"][w] = {"steps": steps, "wall_s": wall, "steps_per_s": steps / wall,
                                    "s_per_step_median": float(np.median([e["seconds_per_step_median"] for e in logs]))}
            print(f"workers {w}: {steps} steps in {wall:.1f} s: {steps / wall:.2f} steps/s", flush=True)
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
