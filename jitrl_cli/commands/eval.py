"""`jitrl eval` and `jitrl report`: compare arms over many episodes and seeds, plot the learning curves."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from jitrl_cli.commands import options
from jitrl_cli.core.config import AgentConfig
from jitrl_cli.errors import UserError


def summary_table(summary: dict[str, Any]) -> Table:
    """The arm comparison of a summary (see :mod:`jitrl_cli.runs.report`); ± is the sample std over seeds."""
    from jitrl_cli.runs.report import plus_minus as _pm

    p = summary["params"]
    table = Table(title=f"{p.get('game') or p.get('task', '')}: {p.get('episodes', '?')} episodes × {p.get('max_steps', '?')} steps")
    for col in ("arm", "seeds", "eps", "average", "final", "last 10", "best", "norm", "AUC", "s/step"):
        table.add_column(col, justify="left" if col == "arm" else "right", overflow="fold")
    for arm, s in summary["arms"].items():
        n = len(s["seeds"])
        table.add_row(arm, str(n), str(s["episodes"]), _pm(s["average"], n), _pm(s["final"], n), _pm(s["last10"], n),
                      f"{s['best']:g}", "–" if s["normalized"] is None else f"{s['normalized']:.3f}", f"{s['auc']:.2f}",
                      "–" if s["seconds_per_step_median"] is None else f"{s['seconds_per_step_median']:.2f}")
    table.caption = ("mean ± sample std over seeds (n − 1); norm = average / max score; "
                     "AUC = area under the mean curve / (episodes − 1)")
    return table


def _print_summary(summary: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print(json.dumps(summary))
    else:
        from jitrl_cli.runs.report import table_console

        table = summary_table(summary)
        console = table_console(table)
        console.print(table)
        console.print(f"plot: {summary['plot']}", markup=False, highlight=False, soft_wrap=True)


@options.with_policy_options(options.GAME_POLICY | {"beta": typer.Option(options.BETA.default, "--beta", help="β of the jitrl arm (the static arm has β = 0).")})
def eval_(
    ctx: typer.Context,
    game: Optional[str] = typer.Argument(None, help="Game name (e.g. zork1) or story file; omit it with --suite."),
    suite: Optional[str] = typer.Option(None, "--suite", help="Web suite instead of a game: miniwob (with --tasks; --max-steps then defaults to 10)."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma list of MiniWoB++ tasks for --suite miniwob, evaluated one after another."),
    episodes: int = typer.Option(50, "--episodes", "-n", help="Episodes per arm and seed."),
    max_steps: int = typer.Option(60, "--max-steps", help="Steps per episode (with --suite: 10 unless given)."),
    arms: str = typer.Option("jitrl,static", "--arms", help="Comma list: jitrl (the update), static (β = 0, no memory)."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds per arm (seed, seed+1, …)."),
    seed: int = typer.Option(0, "--seed", help="First seed."),
    out: Path = typer.Option(..., "--out", help="Eval directory (created; re-running resumes it)."),
    model: Optional[Path] = options.MODEL,
    rom_dir: Optional[Path] = options.ROM_DIR,
    policy: Optional[dict] = None,  # the learning options of options.GAME_POLICY (β: the jitrl arm's)
    state_hash: str = options.STATE_HASH,
    n_ctx: int = options.N_CTX,
    valid_actions_timeout: float = options.VALID_ACTIONS_TIMEOUT,
    force: bool = typer.Option(False, "--force", help="Continue in --out even if it holds a run with other settings."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON (nothing else on stdout)."),
) -> None:
    """Run arms × seeds × episodes on fresh memories (resumable), then write summary.json and curve.png.

    With --suite, options not given take `jitrl web`'s defaults: 10 steps, β 3, γ 0.5, k 10,
    paper exploration, mean Q̂, no exact match or cycle avoidance."""
    from jitrl_cli.runs.evaluation import Run, check_out_dir, check_run_file, parse_arms, run_eval
    from jitrl_cli.llm.model import resolve_model_path
    from jitrl_cli.runs.report import write_report
    from jitrl_cli.runs.session import open_game_session, resolve_game
    from jitrl_cli.core.validation import check_options
    from memories.embedding import get_embedder

    arm_names = parse_arms(arms)
    check_options(episodes=episodes, seeds=seeds, n_ctx=n_ctx, valid_actions_timeout=valid_actions_timeout)
    check_out_dir(out)
    config = AgentConfig.from_options(**policy, learn=True, max_steps=max_steps, seed=seed)
    if game is None or suite is not None or tasks is not None:  # the web form: --suite miniwob --tasks A,B
        from jitrl_cli.runs.web_eval import eval_suite, option_given

        if state_hash != options.STATE_HASH.default and option_given(ctx, "state_hash"):
            raise UserError("--state-hash applies to games only (web pages have no world state)")
        return eval_suite(game=game, suite=suite, tasks=tasks, config=config, out=out, episodes=episodes,
                          arms=arm_names, seeds=seeds, model=model, n_ctx=n_ctx, force=force, json_out=json_out, ctx=ctx)
    check_options(state_hash=state_hash)
    rom = resolve_game(game, rom_dir)
    model_path = resolve_model_path(model)
    params = {"game": rom.stem, "episodes": episodes, "max_steps": max_steps, "arms": arm_names, "seeds": seeds,
              "seed": seed, "model": model_path.name, **policy, "state_hash": state_hash}
    check_run_file(out, params, force)
    runs = [Run(arm, seed + i) for arm in arm_names for i in range(seeds)]
    session = open_game_session(rom, model_path, n_ctx, max_steps, valid_actions_timeout, state_hash)
    embedder = get_embedder()

    console = Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=console, disable=not console.is_terminal)
    task = progress.add_task(f"eval {rom.stem}", total=len(runs) * episodes)

    def on_episode(run, result, done):
        if result is None:
            progress.advance(task, done)
            return
        progress.update(task, advance=1, description=f"eval {rom.stem} · {run.name} ep {done}: score {result.score:g}")
        if not console.is_terminal and not json_out:
            print(f"{run.name} episode {done}: score {result.score:g} in {result.steps} steps", file=sys.stderr, flush=True)

    try:
        with progress:
            run_eval(out=out, runs=runs, episodes=episodes, namespace=session.env.name, header=session.header,
                     env=session.env, make_agent=lambda cfg, store: session.agent(embedder, store, cfg),
                     base_config=config, embedder=embedder, on_episode=on_episode)
    finally:
        session.close()
    _print_summary(write_report(out), json_out)


def report(
    out: Path = typer.Argument(..., help="An eval directory written by `jitrl eval --out`."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Re-render summary.json, the table and curve.png from an eval directory's episode logs."""
    from jitrl_cli.runs.report import write_report

    if not out.is_dir():
        raise UserError(f"no eval directory {out}")
    from jitrl_cli.runs.web_eval import is_suite_dir, print_suite_summary, write_suite_report

    if is_suite_dir(out):  # `jitrl eval --suite` output: every task and the aggregate
        return print_suite_summary(write_suite_report(out), json_out)
    _print_summary(write_report(out), json_out)
