"""`jitrl eval` and `jitrl report`: compare arms over many episodes and seeds, plot the learning curves."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from jitrl_cli.commands import options
from jitrl_cli.commands.view import EvalProgressView, print_summary
from jitrl_cli.core.config import PAPER_SETTINGS, AgentConfig, with_preset, with_return
from jitrl_cli.core.validation import check_options
from jitrl_cli.errors import UserError
from jitrl_cli.llm.backend import Backend
from jitrl_cli.runs.evaluation import check_out_dir, check_run_file, make_runs, parse_arms
from jitrl_cli.runs.game_eval import eval_game
from jitrl_cli.runs.game_suite import eval_games, is_games_dir, write_games_report
from jitrl_cli.runs.report import write_report
from jitrl_cli.runs.session import resolve_game
from jitrl_cli.runs.web_eval import eval_suite, is_suite_dir, write_suite_report


@options.with_policy_options(options.GAME_POLICY | {"beta": typer.Option(options.BETA.default, "--beta", help="β of the jitrl arm (the static arm has β = 0)."),
                                                    "abstract_actions": options.ABSTRACT_ACTIONS,
                                                    "backoff_actions": options.BACKOFF_ACTIONS})
@options.with_backend_options
def eval_(
    ctx: typer.Context,
    game: Optional[str] = typer.Argument(None, help="Game name (e.g. zork1) or story file; omit it with --suite or --games."),
    games: Optional[str] = typer.Option(None, "--games", help="Comma list of games (or all: every game found), evaluated one after another into OUT/<game>/, with an aggregate."),
    suite: Optional[str] = typer.Option(None, "--suite", help="Web suite instead of a game: miniwob (with --tasks; --max-steps then defaults to 10)."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma list of MiniWoB++ tasks for --suite miniwob, evaluated one after another (all: the 121 that show actionable elements; README lists the excluded)."),
    episodes: int = typer.Option(50, "--episodes", "-n", help="Episodes per arm and seed."),
    max_steps: int = typer.Option(60, "--max-steps", help="Steps per episode (with --suite: 10 unless given)."),
    arms: str = typer.Option("jitrl,static", "--arms", help="Comma list: jitrl (the update), static (β = 0, no memory)."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds per arm (seed, seed+1, …)."),
    seed: int = typer.Option(0, "--seed", help="First seed."),
    out: Path = typer.Option(..., "--out", help="Eval directory (created; re-running resumes it)."),
    rom_dir: Optional[Path] = options.ROM_DIR,
    policy: Optional[dict] = None,  # the learning options of options.GAME_POLICY (β: the jitrl arm's)
    backend: Optional[dict] = None,  # the model options of options.BACKEND
    state_hash: str = options.STATE_HASH,
    valid_actions_timeout: float = options.VALID_ACTIONS_TIMEOUT,
    workers: int = options.WORKERS,
    ray: Optional[str] = typer.Option(None, "--ray", help="Run the arm × seed jobs as Ray tasks on the cluster at this address (host:port, ray://host:10001, auto; local = start one here). Needs pip install 'jitrl[ray]'."),
    paper: bool = options.PAPER,
    task_memory: bool = typer.Option(False, "--task-memory", help="With --suite: a fresh memory per task (no transfer between tasks). Default: one memory per arm and seed for the whole suite, the paper's cross-task memory."),
    force: bool = typer.Option(False, "--force", help="Continue in --out even if it holds a run with other settings."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON (nothing else on stdout)."),
) -> None:
    """Run arms × seeds × episodes on fresh memories (resumable), then write summary.json and curve.png.

    With --games A,B (or all), each game gets its own eval directory OUT/<game>/ and OUT/ the aggregate.

    With --suite, options not given take `jitrl web`'s defaults: 10 steps, β 10, γ 0.5, k 10,
    paper exploration, mean Q̂, back-off action keys, --unseen-q pessimistic, cycle avoidance, no exact match."""
    if paper:
        policy = with_preset(policy, PAPER_SETTINGS, given_options(ctx))
    policy = with_return(policy, given_options(ctx))
    abstract_actions = policy.pop("abstract_actions")  # web only: not settings of game evals (their run.json)
    backoff_actions = policy.pop("backoff_actions")
    if suite is None and tasks is None:
        if not abstract_actions:
            raise UserError("--exact-actions applies to web suites (--suite miniwob --tasks A,B)")
        if "backoff_actions" in given_options(ctx):
            raise UserError("--backoff-actions/--no-backoff-actions apply to web suites (--suite miniwob --tasks A,B)")
    arm_names = parse_arms(arms)
    check_options(episodes=episodes, seeds=seeds, workers=workers, n_ctx=backend["n_ctx"], valid_actions_timeout=valid_actions_timeout)
    check_out_dir(out)
    config = AgentConfig.from_options(**policy, abstract_actions=abstract_actions, backoff_actions=backoff_actions, learn=True, max_steps=max_steps, seed=seed)
    given = given_options(ctx)
    if games is not None:
        if game is not None:
            raise UserError(f"give either GAME ({game}) or --games, not both")
        if suite is not None or tasks is not None:
            raise UserError("--games and --suite/--tasks are exclusive: give one of them")
    if task_memory and suite is None and tasks is None:
        raise UserError("--task-memory applies to web suites (--suite miniwob --tasks A,B)")
    with EvalProgressView(json_out) as progress:
        if games is not None:
            check_options(state_hash=state_hash)
            model = Backend.from_options(**backend)
            params = {"episodes": episodes, "max_steps": max_steps, "arms": arm_names, "seeds": seeds, "seed": seed,
                      **model.params(), **policy, "state_hash": state_hash}
            summary = eval_games(games=games, rom_dir=rom_dir, params=params, config=config, out=out, episodes=episodes,
                                 arms=arm_names, seeds=seeds, backend=model,
                                 valid_actions_timeout=valid_actions_timeout, state_hash=state_hash, force=force,
                                 progress=progress, workers=workers, ray=ray)
        elif game is None or suite is not None or tasks is not None:  # the web form: --suite miniwob --tasks A,B
            if ray:
                raise UserError("--ray runs game evals; a web suite runs its arm × seed jobs here (--workers N)")
            if state_hash != options.STATE_HASH.default and "state_hash" in given:
                raise UserError("--state-hash applies to games only (web pages have no world state)")
            summary = eval_suite(game=game, suite=suite, tasks=tasks, config=config, out=out, episodes=episodes, arms=arm_names,
                                 seeds=seeds, backend=Backend.from_options(**backend), force=force, task_memory=task_memory,
                                 workers=workers, given=given, progress=progress)
        else:
            check_options(state_hash=state_hash)
            rom = resolve_game(game, rom_dir)
            model = Backend.from_options(**backend)
            check_run_file(out, {"game": rom.stem, "episodes": episodes, "max_steps": max_steps, "arms": arm_names,
                                 "seeds": seeds, "seed": seed, **model.params(), **policy, "state_hash": state_hash},
                           force)
            eval_game(rom=rom, out=out, runs=make_runs(arm_names, seed, seeds), episodes=episodes, config=config,
                      backend=model, valid_actions_timeout=valid_actions_timeout,
                      state_hash=state_hash, progress=progress, workers=workers, ray=ray)
            summary = write_report(out)
    print_summary(summary, json_out)


def given_options(ctx: typer.Context) -> set[str]:
    """The parameter names of the options given on the command line of the command run in ``ctx`` (not defaults)."""
    return {name for name in ctx.params
            if (source := ctx.get_parameter_source(name)) is not None and source.name != "DEFAULT"}


def report(
    out: Path = typer.Argument(..., help="An eval directory written by `jitrl eval --out`."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Re-render summary.json, the table and curve.png from an eval directory's episode logs."""
    if not out.is_dir():
        raise UserError(f"no eval directory {out}")
    if is_suite_dir(out):
        summary = write_suite_report(out)
    elif is_games_dir(out):
        summary = write_games_report(out)
    else:
        summary = write_report(out)
    print_summary(summary, json_out)
