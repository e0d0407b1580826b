"""Command-line options shared by `play`, `eval` and `web` (one definition, one help text, one default).

The learning defaults of the game commands (`play`, `eval`, `memory inspect`) are the configuration
measured best, first on zork1 and detective (bench/RESULTS.md, "Choosing the defaults" and "Exact neighbours
only, and cycle avoidance"), then on the 12-game suite: exact world-state match with ANN neighbours only for
states never visited, cycle avoidance, Q̂ = expectimax ("`--q-estimate expectimax` becomes the default"),
back-off states (a candidate this world state never took is valued by similar states; "`--backoff-states` on
the 12 games: the new default"), deterministic UCB exploration, γ 0.95, β 30, k 50, and the sequence prior (``--prior
constrained`` is the faster step; it learned worse on zork1: bench/RESULTS.md, "The constrained prior").
The paper's settings (`--paper`) are `--no-exact-match --no-avoid-cycles --q-estimate mean --exploration paper
--gamma 0.5 --beta 3 --k 10 --alpha 5 --bonus-prob 0.65` (α and λ of the paper's exploration bonus).
`jitrl web` and `eval --suite` have their own defaults (``WEB_DEFAULTS``): the paper's γ, k, exploration and Q̂,
with β 10, back-off action keys, no earlier actions in the prompt, ``--unseen-q pessimistic`` and cycle avoidance,
each measured on MiniWoB++.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from jitrl_cli.core.config import WEB_DEFAULTS

MODEL = typer.Option(None, "--model", help="GGUF model file (default: $JITRL_MODEL, else Gemma 3 270M).")
MEMORY = typer.Option(None, "--memory", help="Memory directory (default: $JITRL_MEMORY_DIR, else the user data dir).")
ROM_DIR = typer.Option(None, "--rom-dir", help="Directory searched first for games.")

_BETA_HELP = "β: strength of the advantage update on the logits (0 = static policy)."
_Q_HELP = "Q̂(s,a) from the neighbours' returns: max (best return; deterministic games), mean (paper) or expectimax (max over choices, mean over chance outcomes of the same state and action)."
BETA = typer.Option(30.0, "--beta", help=_BETA_HELP)
WEB_BETA = typer.Option(WEB_DEFAULTS["beta"], "--beta", help=_BETA_HELP)
GAMMA = typer.Option(0.95, "--gamma", help="γ: discount of the returns.")
WEB_GAMMA = typer.Option(WEB_DEFAULTS["gamma"], "--gamma", help=GAMMA.help)
K = typer.Option(50, "--k", help="Neighbours retrieved per step.")
WEB_K = typer.Option(WEB_DEFAULTS["k"], "--k", help=K.help)
MIN_SIMILARITY = typer.Option(0.5, "--min-similarity", help="Cosine similarity threshold for neighbours.")
TEMPERATURE = typer.Option(1.0, "--temperature", help="Temperature T of the prior logits.")
EXPLORATION = typer.Option("ucb", "--exploration", help="Bonus for unseen candidates: ucb (deterministic count bonus), puct (count bonus weighted by the prior), paper or none.")
WEB_EXPLORATION = typer.Option(WEB_DEFAULTS["exploration"], "--exploration", help=EXPLORATION.help)
ALPHA = typer.Option(1.0, "--alpha", help="α: exploration bonus scale.")
BONUS_PROB = typer.Option(0.5, "--bonus-prob", help="λ: probability of the paper's exploration bonus.")
DEATH_PENALTY = typer.Option(10.0, "--death-penalty", help="Reward subtracted when the game is lost.")
DEATH_CREDIT = typer.Option(0, "--death-credit", help="H: where the game is lost, the points lost and the death penalty enter the returns of the last H steps only, not of every step before the death (0: every step, the Monte Carlo return).")
CAUTIOUS_AFTER = typer.Option(5, "--cautious-after", help="N: once this game's memory holds N episodes lost to a death and not one step that scored a point, play without the exploration bonus and without cycle avoidance (exploring has found only deaths), keeping to the moves memory knows survive, until a point is scored (0: never).")
EXACT_MATCH = typer.Option(True, "--exact-match/--no-exact-match", help="Retrieve steps from the identical world state (Jericho's state hash) first.")
Q_ESTIMATE = typer.Option("expectimax", "--q-estimate", help=_Q_HELP)
WEB_Q_ESTIMATE = typer.Option(WEB_DEFAULTS["q_estimate"], "--q-estimate", help=_Q_HELP)
ACROSS_WORLDS = typer.Option("max", "--across-worlds", help="With --q-estimate expectimax: how an action's neighbours from different world states (the similar states standing in for a state never visited, or backing it off) combine: max (the best world state's value) or mean (weighted by their steps: the agent is in none of them, so a death from one counts beside a survival from another).")
STEP_REWARDS = typer.Option("env", "--step-rewards", help="Rewards in the returns: env (the game's), llm (the model judges each step after the episode) or both.")
RETURNS = typer.Option("mc", "--returns", help="Returns behind Q̂ and V̂: mc (each step's own discounted return, paper) or backup (Bellman backup over the remembered transitions between identical world states; needs --exact-match's world hashes).")
EXACT_ALL = typer.Option(False, "--exact-all/--exact-recent", help="With --exact-match: read every stored step of this very world state (the tabular estimate over all its visits), not only the k most recent (a state visited at every episode's step 10 otherwise forgets a death there after some 20 episodes).")
FILL_NEIGHBOURS = typer.Option(False, "--fill-neighbours/--no-fill-neighbours", help="With --exact-match, ANN neighbours also fill the k places the identical state's steps left (else they stand in only for a state never visited).")
AVOID_CYCLES = typer.Option(True, "--avoid-cycles/--no-avoid-cycles", help="Give the lowest advantage to an action that earlier in this episode led from the same world state straight back into a state already visited (it closed a cycle).")
SAFE_CYCLES = typer.Option(False, "--safe-cycles/--no-safe-cycles", help="With --avoid-cycles: where every other candidate is a known loss (tried, with a negative remembered value: a death among its outcomes), an action that closed a cycle keeps its own advantage: walking the cycle again costs steps, the loss costs points.")
WEB_AVOID_CYCLES = typer.Option(WEB_DEFAULTS["avoid_cycles"], "--avoid-cycles/--no-avoid-cycles", help="Give the lowest advantage to an action that earlier in this episode led from the same page straight back to a page already seen (it closed a cycle: selecting the selected option again, ticking and unticking a box).")
_UNSEEN_Q_HELP = ("Where Q̂ starts for a candidate no neighbour took, before any exploration bonus: value (V̂, the paper: A = 0), "
                  "optimistic (max(V̂, 0): returns dragged below 0 by later deaths do not stop exploration), zero (0: "
                  "where the known actions win, V̂ > 0, an unknown one ranks below them) or pessimistic (min(V̂, 0): zero where "
                  "V̂ > 0, value where V̂ < 0).")
UNSEEN_Q = typer.Option("value", "--unseen-q", help=_UNSEEN_Q_HELP)
WEB_UNSEEN_Q = typer.Option(WEB_DEFAULTS["unseen_q"], "--unseen-q", help=_UNSEEN_Q_HELP)
_PRIOR_HELP = ("The LLM prior over the candidates: sequence (probability that the model writes the action, full-vocabulary "
               "softmax at every token) or constrained (probability under decoding constrained to the candidate actions: "
               "only the tokens where candidates branch are scored, a faster step).")
PRIOR = typer.Option("sequence", "--prior", help=_PRIOR_HELP)
WEB_PRIOR = typer.Option(WEB_DEFAULTS["prior"], "--prior", help=_PRIOR_HELP)
STATE_HASH = typer.Option("jericho", "--state-hash", help="What makes two world states the same for --exact-match and cycle avoidance: jericho (Jericho's hash of the object tree), unordered (the same tree, ignoring the order of objects inside a container, so taking and dropping an object returns to the same state), or local (only the location, what is in it and what the player carries, and the score: visits that differ far away share their experience).")
NOVELTY = typer.Option(0.0, "--novelty", help="Count-based exploration reward for reaching rarely visited states (0 = off).")
REPLAY_BEST = typer.Option(False, "--replay-best/--no-replay-best", help="Phased exploration (Go-Explore, XTX): each episode first replays the best stored episode's path (loops erased) to a state drawn along it, up to where it reached its best score, while the world states match, then explores with the policy.")
GO_EXPLORE = typer.Option(True, "--go-explore/--no-go-explore", help="Go-Explore's return (on by default: the best 12-game suite mean): each episode first replays the shortest stored path to a cell (location, inventory, score) drawn from the archive of the states memory reached, rarely visited and high-scoring cells first, while the world states match, then explores with the policy. --replay-best turns it off; not both.")
ABSTRACT_ACTIONS = typer.Option(True, "--abstract-actions/--exact-actions", help="Web: memory knows an action by what it does (the element's role and name, goal values masked: click button \"#goal\"), so lessons carry over between instances and tasks; --exact-actions: by its exact string.")
BACKOFF_ACTIONS = typer.Option(WEB_DEFAULTS["backoff_actions"], "--backoff-actions/--no-backoff-actions", help="Web, with --abstract-actions: a candidate whose key memory has not seen near this page is valued by the actions on the same kind of element (click checkbox \"Hh8\" by click checkbox), so an instance's random names do not make every candidate new.")
BACKOFF_STATES = typer.Option(True, "--backoff-states/--no-backoff-states", help="With --exact-match: a candidate never taken in this very world state is valued by what it did in similar states (the ANN neighbours) and gets no exploration bonus, so an action that killed in every similar state is not tried again in each new one.")
AVOID_DEATHS = typer.Option(False, "--avoid-deaths/--no-avoid-deaths", help="A candidate never taken from this very world state, which killed the player in the same place carrying the same things before (jump on a bridge over a ravine), is valued by every step of that place and inventory that took it (deaths weighted by how often they happened) and gets no exploration bonus, whatever else differs in the world.")
AVOID_DEATHS_OWN = typer.Option(False, "--avoid-deaths-own/--no-avoid-deaths-own", help="--avoid-deaths (implied), also for a candidate this very world state took before: its own steps count among the place's, as chance outcomes (the grue in the dark kills one move in several; surviving it five times does not make the move safe).")
AVOID_DEATHS_HORIZON = typer.Option(1, "--avoid-deaths-horizon", help="With --avoid-deaths: an action counts as deadly in a place where it was among the last H steps of an episode that died (1: the step that died; 2: also the move into a dark place from which every move met the grue); with H > 1 such an action is valued by the mean return of that place's steps of it.")
PROMPT_INVENTORY = typer.Option(False, "--prompt-inventory/--no-prompt-inventory", help="Show what the player carries after every observation in the model's transcript.")
HISTORY = typer.Option(None, "--history", help="Earlier actions the model's transcript shows before the current observation (0: none, only the page or room it is in; default: all that fit the context). A small model tends to copy its last action; a short window stops that.")
WEB_HISTORY = typer.Option(WEB_DEFAULTS["history"], "--history", help="Earlier actions the model's prompt shows before the current page (default 0: none; a large N shows all that fit the context). A small model tends to copy its last action.")
PAPER = typer.Option(False, "--paper", help="The paper's settings for the options not given: --beta 3 --gamma 0.5 --k 10 --exploration paper --alpha 5 --bonus-prob 0.65 --q-estimate mean --no-exact-match --no-avoid-cycles --no-go-explore --cautious-after 0.")
GREEDY = typer.Option(False, "--greedy", help="Take the argmax of the posterior instead of sampling.")
NO_LEARN = typer.Option(False, "--no-learn", help="Static baseline: β = 0, memory neither read nor written.")
LOG_DIR = typer.Option(None, "--log-dir", help="Write one JSONL row per step here.")
N_CTX = typer.Option(4096, "--n-ctx", help="Model context size in tokens (with --server: the prompt budget).")
N_GPU_LAYERS = typer.Option(0, "--n-gpu-layers", help="Layers llama.cpp offloads to a GPU (llama-cpp-python built with CUDA or Metal: README, \"Scaling out\").")
WORKERS = typer.Option(1, "--workers", help="Episodes in flight at once, each in its own process (with --server they share the server; in-process, llama.cpp's threads are split between them unless $JITRL_THREADS is set).")
SERVER = typer.Option(None, "--server", help="Score on an inference server at this URL instead of in-process (also $JITRL_SERVER): vLLM, SGLang, llama.cpp's llama-server or llama-cpp-python's server.")
SERVER_MODEL = typer.Option(None, "--server-model", help="The served model's name (default: the first the server lists).")
SERVER_API = typer.Option("openai", "--server-api", help="The server's protocol: openai (/v1/completions with echoed prompt log-probs: vLLM, llama-cpp-python), sglang (SGLang's /generate) or llamacpp (llama-server's /completion).")
VALID_ACTIONS_TIMEOUT = typer.Option(10.0, "--valid-actions-timeout", help="Seconds before Jericho's valid-action finder is abandoned.")

#: The learning options of the game commands (`play`, `eval`): parameter name → option. They are the
#: keyword arguments of :func:`jitrl_cli.commands.app.agent_config` that the command line sets; each option's
#: type is its default's.
GAME_POLICY: dict[str, Any] = {
    "beta": BETA, "gamma": GAMMA, "k": K, "min_similarity": MIN_SIMILARITY, "temperature": TEMPERATURE,
    "exploration": EXPLORATION, "alpha": ALPHA, "bonus_prob": BONUS_PROB, "death_penalty": DEATH_PENALTY, "death_credit": DEATH_CREDIT,
    "cautious_after": CAUTIOUS_AFTER,
    "exact_match": EXACT_MATCH, "exact_all": EXACT_ALL, "fill_neighbours": FILL_NEIGHBOURS, "avoid_cycles": AVOID_CYCLES, "safe_cycles": SAFE_CYCLES,
    "unseen_q": UNSEEN_Q, "backoff_states": BACKOFF_STATES, "avoid_deaths": AVOID_DEATHS, "avoid_deaths_own": AVOID_DEATHS_OWN, "avoid_deaths_horizon": AVOID_DEATHS_HORIZON, "prior": PRIOR, "novelty": NOVELTY, "q_estimate": Q_ESTIMATE,
    "across_worlds": ACROSS_WORLDS, "step_rewards": STEP_REWARDS, "returns": RETURNS, "replay_best": REPLAY_BEST, "go_explore": GO_EXPLORE, "prompt_inventory": PROMPT_INVENTORY, "history": HISTORY, "greedy": GREEDY,
}
#: The learning options of `jitrl web`: the game commands' shared ones, with the web defaults (``WEB_DEFAULTS``).
WEB_POLICY: dict[str, Any] = {name: GAME_POLICY[name] for name in ("min_similarity", "temperature", "alpha", "bonus_prob", "greedy")} | {
    "beta": WEB_BETA, "gamma": WEB_GAMMA, "k": WEB_K, "exploration": WEB_EXPLORATION, "q_estimate": WEB_Q_ESTIMATE,
    "unseen_q": WEB_UNSEEN_Q, "prior": WEB_PRIOR, "abstract_actions": ABSTRACT_ACTIONS, "backoff_actions": BACKOFF_ACTIONS, "history": WEB_HISTORY,
    "avoid_cycles": WEB_AVOID_CYCLES,
}
POLICY_PANEL = "Learning (the JitRL policy)"
#: The model options of `play`, `eval` and `web`: the keyword arguments of
#: :meth:`jitrl_cli.llm.backend.Backend.from_options`.
BACKEND: dict[str, Any] = {"model": MODEL, "n_ctx": N_CTX, "n_gpu_layers": N_GPU_LAYERS, "server": SERVER,
                           "server_model": SERVER_MODEL, "server_api": SERVER_API}
BACKEND_PANEL = "Model (in-process llama.cpp, or an inference server)"
_TYPES = {"history": Optional[int], "model": Optional[Path], "server": Optional[str], "server_model": Optional[str]}


def with_policy_options(spec: dict[str, Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a typer command: declare the learning options of ``spec`` once, for every command.

    The command declares one parameter ``policy: dict``; in the command's signature (what typer reads)
    it is replaced, at its place, by one option per entry of ``spec``, shown under the help panel
    :data:`POLICY_PANEL`, typed as its default is. When the command runs, their values reach it as ``policy``, a dict
    parameter name → value (e.g. ``{"beta": 30.0, "gamma": 0.95, ...}``).

    Raises:
        TypeError: at import time, if the command has no ``policy`` parameter.
    """
    return with_option_group("policy", spec, POLICY_PANEL)


def with_backend_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for a typer command: the model options (:data:`BACKEND`) reach it as one dict ``backend``,
    the keyword arguments of :meth:`jitrl_cli.llm.backend.Backend.from_options`.

    Raises:
        TypeError: at import time, if the command has no ``backend`` parameter.
    """
    return with_option_group("backend", BACKEND, BACKEND_PANEL)(command)


def with_option_group(group: str, spec: dict[str, Any], panel: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: replace the command's parameter ``group`` by the options of ``spec`` (help panel ``panel``);
    their values reach the command as one dict named ``group`` (see :func:`with_policy_options`).

    Raises:
        TypeError: at import time, if the command has no parameter ``group``.
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        if group not in signature.parameters:
            raise TypeError(f"{command.__name__} has no `{group}` parameter")
        params: list[inspect.Parameter] = []
        for param in signature.parameters.values():
            if param.name != group:
                params.append(param)
                continue
            for name, option in spec.items():
                shown = copy.copy(option)
                shown.rich_help_panel = panel
                params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=shown,
                                                annotation=_TYPES.get(name, type(option.default))))

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in spec}
            return command(*args, **{group: values}, **kwargs)

        run.__signature__ = signature.replace(parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params])
        run.__annotations__ = {p.name: p.annotation for p in params} | {"return": signature.return_annotation}
        return run

    return decorate
