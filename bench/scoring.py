"""Scoring cost per step against the llama.cpp prefill limit (issue 5).

Plays zork1 with the prior policy (no memory) and, at every step, scores the
candidate actions with :class:`jitrl_cli.llm.scoring.CandidateScorer`. Per step it records

* tokens that had to be evaluated: the prompt tokens new since the last step plus
  every candidate's tokens (what a cache-aware, one-batch evaluation must feed);
* tokens actually evaluated: new prompt tokens plus the candidate trie's internal
  nodes (shared prefixes once, last tokens never);
* scoring seconds, against the limit = (tokens that had to be evaluated) / the
  prefill throughput measured on one long prompt with the same build.

Goal: scoring seconds ≤ 1.3 × limit (median over steps). With ``--sequential N``
the first N steps are also scored the naive way (each candidate alone from an empty
cache) for comparison.

The floor. A prefill computes output logits for one position per prompt; scoring needs
them at the prompt's end and at every internal trie node, and each such row is a product
with the whole output matrix (Gemma 3 270M: 262,144 × 640, tied to the Q8_0 token
embeddings, i.e. 168 M multiply-adds per row, more than the 100 M of the transformer body
per token). The bench measures that cost on the same build (8 positions decoded with logits
at 1 versus at all 8 of them) and reports, per step, floor = limit + (rows − 1) × row cost:
what exact full-vocabulary log-probabilities cost even with a perfect batch.

With ``--prior constrained`` the candidates are scored as decoding constrained to them
(:class:`jitrl_cli.llm.scoring.Prior`): only trie nodes where the candidates branch need a logit row,
and only they and their ancestors are decoded. The tokens that had to be evaluated are counted
the same way for both priors (new prompt tokens + all candidate tokens), so the ratios compare.

Usage::

    python bench/scoring.py --steps 60 --json bench/results/scoring.json
    python bench/scoring.py --steps 60 --prior constrained --json bench/results/scoring-constrained.json
    python bench/scoring.py --steps 60 --prior constrained --walk uniform   # the same steps for both priors
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.jericho_env import JerichoEnv  # noqa: E402
from jitrl_cli.llm.model import LlamaModel, default_model_path  # noqa: E402
from jitrl_cli.llm.prompt import TranscriptPrompt  # noqa: E402
from jitrl_cli.llm.scoring import CandidateScorer, Prior  # noqa: E402
from jitrl_cli.core.update import choose_action  # noqa: E402


def prefill_throughput(scorer: CandidateScorer, llm: LlamaModel, n_tokens: int, repeats: int = 3) -> float:
    """Tokens/s of evaluating one fresh ``n_tokens`` prompt (best of ``repeats``)."""
    text = " ".join(f"word{i}" for i in range(n_tokens))
    prompt = llm.tokenize(text, True)[:n_tokens]
    best = float("inf")
    for _ in range(repeats):
        scorer.reset()
        result = scorer.score(prompt, [[prompt[-1]]])  # a one-token candidate is a leaf: only the prompt is evaluated
        best = min(best, result.seconds)
    scorer.reset()
    return len(prompt) / best


def output_row_cost(scorer: CandidateScorer, llm: LlamaModel, repeats: int = 9) -> float:
    """Seconds one extra output-logit row costs: 8 decoded positions with logits at all 8 minus
    at 1, divided by 7 (median of ``repeats``), after a 200-token prompt."""
    prompt = llm.tokenize(" ".join(f"word{i}" for i in range(300)), True)[:200]
    scorer.reset()
    scorer.score(prompt, [[prompt[-1]]])
    P = len(prompt)
    times = {1: [], 8: []}
    for _ in range(repeats):
        for rows in (1, 8):
            scorer.truncate(P)
            entries = [(prompt[i], P + i, (0,), i >= 8 - rows) for i in range(8)]
            t0 = time.perf_counter()
            scorer.decode(entries)
            times[rows].append(time.perf_counter() - t0)
    scorer.reset()
    return (statistics.median(times[8]) - statistics.median(times[1])) / 7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", type=Path, default=Path(os.environ.get("JITRL_GAMES_DIR", "../shared/games")) / "zork1.z5")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--prefill-tokens", type=int, default=512)
    parser.add_argument("--sequential", type=int, default=5, help="also score the first N steps the naive way")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prior", choices=[p.value for p in Prior], default=Prior.sequence.value)
    parser.add_argument("--walk", choices=["prior", "uniform"], default="prior",
                        help="how the bench picks each step's action: sampled from the prior scored, or uniformly "
                             "(the same steps for both priors, for a like-for-like comparison)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    llm = LlamaModel(args.model or default_model_path(), n_ctx=4096)
    scorer = CandidateScorer(llm)
    tps = prefill_throughput(scorer, llm, args.prefill_tokens)
    row_cost = output_row_cost(scorer, llm)
    env = JerichoEnv(args.game, max_steps=args.steps)
    rng = np.random.default_rng(args.seed)
    prompt = TranscriptPrompt(llm.tokenize, "The following is a transcript of an expert player of a text adventure game.", 3584)
    obs, info = env.reset()
    prompt.start(obs)
    rows = []
    for t in range(args.steps):
        candidates = list(dict.fromkeys(info.get("candidates") or []))
        if not candidates:
            break
        cand_tokens = [prompt.candidate_tokens(a) for a in candidates]
        tokens = prompt.tokens()
        result = scorer.score(tokens, cand_tokens, prior=Prior(args.prior))
        needed = result.prompt_tokens_evaluated + result.candidate_tokens
        row = {
            "step": t, "candidates": len(candidates), "prompt_tokens": len(tokens),
            "new_prompt_tokens": result.prompt_tokens_evaluated, "candidate_tokens": result.candidate_tokens,
            "tokens_needed": needed, "tokens_evaluated": result.tokens_evaluated,
            "seconds": result.seconds, "limit_seconds": needed / tps, "ratio": result.seconds / (needed / tps),
            "logit_rows": result.logit_rows,
            "floor_ratio": (needed / tps + (result.logit_rows - 1) * row_cost) / (needed / tps),
        }
        if t < args.sequential:
            naive = scorer.score_sequential(tokens, cand_tokens)
            row["sequential_seconds"] = naive.seconds
            row["sequential_tokens_evaluated"] = naive.tokens_evaluated
            scorer.score(tokens, cand_tokens, prior=Prior(args.prior))  # restore the cached prompt for the next step
        rows.append(row)
        chosen = int(rng.integers(len(candidates))) if args.walk == "uniform" else choose_action(result.logprobs, rng)
        obs, _, terminated, truncated, info = env.step(candidates[chosen])
        prompt.append(cand_tokens[chosen], obs)
        if terminated or truncated:
            break
    env.close()
    scorer.close()
    llm.close()

    steady = rows[1:]  # step 0 includes the first prefill of the whole prompt
    med = lambda key, rs=steady: statistics.median(r[key] for r in rs)  # noqa: E731
    seq = [r for r in rows if "sequential_seconds" in r]
    results = {
        "model": llm.name, "prior": args.prior, "walk": args.walk, "threads": llm.n_threads, "prefill_tokens_per_second": round(tps, 1),
        "steps": len(rows),
        "median_candidates": med("candidates"),
        "median_tokens_needed": med("tokens_needed"), "median_tokens_evaluated": med("tokens_evaluated"),
        "tokens_evaluated_over_needed": round(sum(r["tokens_evaluated"] for r in steady) / sum(r["tokens_needed"] for r in steady), 3),
        "median_scoring_seconds": round(med("seconds"), 4), "median_limit_seconds": round(med("limit_seconds"), 4),
        "median_ratio_to_prefill_limit": round(med("ratio"), 3),
        "output_row_seconds": round(row_cost, 4), "median_logit_rows": med("logit_rows"),
        "median_floor_ratio": round(med("floor_ratio"), 3),
        "total_ratio_to_prefill_limit": round(sum(r["seconds"] for r in steady) / sum(r["limit_seconds"] for r in steady), 3),
        "first_step_seconds": round(rows[0]["seconds"], 3) if rows else None,
        "sequential_median_seconds": round(statistics.median(r["sequential_seconds"] for r in seq), 4) if seq else None,
        "sequential_speedup": round(sum(r["sequential_seconds"] for r in seq) / sum(r["seconds"] for r in seq), 1) if seq else None,
        "goal_met": None,
    }
    results["goal_met"] = results["median_ratio_to_prefill_limit"] <= 1.3
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": results, "steps": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
