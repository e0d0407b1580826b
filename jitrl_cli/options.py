"""Command-line options shared by `play`, `eval` and `web` (one definition, one help text, one default)."""

from __future__ import annotations

import typer

MODEL = typer.Option(None, "--model", help="GGUF model file (default: $JITRL_MODEL, else Gemma 3 270M).")
MEMORY = typer.Option(None, "--memory", help="Memory directory (default: $JITRL_MEMORY_DIR, else the user data dir).")
ROM_DIR = typer.Option(None, "--rom-dir", help="Directory searched first for games.")
BETA = typer.Option(3.0, "--beta", help="β: strength of the advantage update on the logits (0 = static policy).")
GAMMA = typer.Option(0.5, "--gamma", help="γ: discount of the returns.")
K = typer.Option(10, "--k", help="Neighbours retrieved per step.")
MIN_SIMILARITY = typer.Option(0.5, "--min-similarity", help="Cosine similarity threshold for neighbours.")
TEMPERATURE = typer.Option(1.0, "--temperature", help="Temperature T of the prior logits.")
EXPLORATION = typer.Option("paper", "--exploration", help="Bonus for unseen candidates: paper, ucb or none.")
ALPHA = typer.Option(1.0, "--alpha", help="α: exploration bonus scale.")
BONUS_PROB = typer.Option(0.5, "--bonus-prob", help="λ: probability of the paper's exploration bonus.")
DEATH_PENALTY = typer.Option(10.0, "--death-penalty", help="Reward subtracted when the game is lost.")
EXACT_MATCH = typer.Option(False, "--exact-match", help="Retrieve steps from the identical world state (Jericho's state hash) first.")
Q_ESTIMATE = typer.Option("mean", "--q-estimate", help="Q̂(s,a) from the neighbours' returns: mean (paper) or max (best return; deterministic games).")
STEP_REWARDS = typer.Option("env", "--step-rewards", help="Rewards in the returns: env (the game's), llm (the model judges each step after the episode) or both.")
RETURNS = typer.Option("mc", "--returns", help="Returns behind Q̂ and V̂: mc (each step's own discounted return, paper) or backup (Bellman backup over the remembered transitions between identical world states; needs --exact-match's world hashes).")
NOVELTY = typer.Option(0.0, "--novelty", help="Count-based exploration reward for reaching rarely visited states (0 = off).")
GREEDY = typer.Option(False, "--greedy", help="Take the argmax of the posterior instead of sampling.")
NO_LEARN = typer.Option(False, "--no-learn", help="Static baseline: β = 0, memory neither read nor written.")
LOG_DIR = typer.Option(None, "--log-dir", help="Write one JSONL row per step here.")
N_CTX = typer.Option(4096, "--n-ctx", help="Model context size in tokens.")
VALID_ACTIONS_TIMEOUT = typer.Option(10.0, "--valid-actions-timeout", help="Seconds before Jericho's valid-action finder is abandoned.")
