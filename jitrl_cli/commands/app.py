"""The ``jitrl`` command line (Typer)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from adapters.base import AdapterError
from jitrl_cli import __version__
from jitrl_cli.commands import options
from jitrl_cli.commands.eval import eval_, given_options, report
from jitrl_cli.commands.memory import memory_app
from jitrl_cli.commands.view import EpisodeView, StepLogger, WorkersView, episode_line, summary_table
from jitrl_cli.commands.web import web
from jitrl_cli.core.config import PAPER_SETTINGS, AgentConfig, with_preset, with_return
from jitrl_cli.core.validation import check_options, install_option_checks
from jitrl_cli.errors import UserError
from jitrl_cli.llm.backend import Backend
from jitrl_cli.paths import default_memory_dir, game_dirs, list_games, user_games_dir
from jitrl_cli.runs.games import download_suite
from jitrl_cli.runs.parallel import PlayJob, run_play_workers
from jitrl_cli.runs.runner import run_episodes
from jitrl_cli.runs.session import open_game_session, resolve_game
from memories.embedding import get_embedder
from memories.files import MemoryStoreError
from memories.store import MemoryStore

app = typer.Typer(
    help="jitrl: a local LLM agent that learns while it plays (Just-In-Time RL, arXiv 2601.18510).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
games_app = typer.Typer(help="Find and download games.", no_args_is_help=True)
app.add_typer(games_app, name="games")
app.add_typer(memory_app, name="memory")
app.command("web")(web)
app.command("eval")(eval_)
app.command("report")(report)


def _print_version(value: bool) -> None:
    if value:
        print(f"jitrl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print jitrl's version and exit."),
) -> None:
    """jitrl: a local LLM agent that learns while it plays (Just-In-Time RL, arXiv 2601.18510)."""


@app.command()
@options.with_policy_options(options.GAME_POLICY)
@options.with_backend_options
def play(
    ctx: typer.Context,
    game: str = typer.Argument(..., help="Game name (e.g. zork1) or path to a story file (.z5/.z8/...)."),
    episodes: int = typer.Option(1, "--episodes", "-n", help="Episodes to play."),
    max_steps: int = typer.Option(50, "--max-steps", help="Steps per episode."),
    memory: Optional[Path] = options.MEMORY,
    rom_dir: Optional[Path] = options.ROM_DIR,
    policy: Optional[dict] = None,  # the learning options of options.GAME_POLICY
    backend: Optional[dict] = None,  # the model options of options.BACKEND
    state_hash: str = options.STATE_HASH,
    seed: int = typer.Option(0, "--seed", help="Seed of the action sampler."),
    no_learn: bool = options.NO_LEARN,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object per episode on stdout, nothing else."),
    log_dir: Optional[Path] = options.LOG_DIR,
    valid_actions_timeout: float = options.VALID_ACTIONS_TIMEOUT,
    workers: int = options.WORKERS,
    paper: bool = options.PAPER,
) -> None:
    """Play a Jericho text game with the JitRL agent, learning across episodes."""
    if paper:
        policy = with_preset(policy, PAPER_SETTINGS, given_options(ctx))
    policy = with_return(policy, given_options(ctx))
    check_options(episodes=episodes, workers=workers, n_ctx=backend["n_ctx"], valid_actions_timeout=valid_actions_timeout,
                  state_hash=state_hash)
    config = AgentConfig.from_options(**policy, learn=not no_learn, max_steps=max_steps, seed=seed)
    rom = resolve_game(game, rom_dir, None if json_out else typer.confirm)
    model = Backend.from_options(**backend)
    if workers > 1:
        if log_dir is not None:
            raise UserError("--log-dir records one episode at a time; play without --workers to log steps")
        _play_in_workers(rom, model, config, None if no_learn else memory or default_memory_dir(), episodes, workers,
                         valid_actions_timeout, state_hash, json_out)
        return
    logger = StepLogger(log_dir) if log_dir else None  # before the memory: a bad --log-dir creates nothing
    embedder = get_embedder()
    session = open_game_session(rom, model, max_steps, valid_actions_timeout, state_hash)  # a bad server: no memory made
    try:
        store = None if no_learn else MemoryStore(memory or default_memory_dir(), embedder)  # --no-learn: never opened
    except BaseException:
        session.close()
        raise
    agent = session.agent(embedder, store, config)
    view = EpisodeView(json_out, logger, line=lambda episode: episode_line(episode.result))
    try:
        shown = view.show(session.title, episodes, max_steps, lambda observer: run_episodes(
            agent, session.target(), session.header, range(1, episodes + 1), observer))
        if view.live:
            view.console.print(summary_table([e.result for e in shown]))
    finally:
        session.close()
        if store is not None:
            store.close()


def _play_in_workers(rom: Path, model: Backend, config: AgentConfig, memory: Optional[Path], episodes: int, workers: int,
                     valid_actions_timeout: float, state_hash: str, json_out: bool) -> None:
    """`play --workers N`: episodes 1..n round-robin over N processes on one memory (:mod:`jitrl_cli.runs.parallel`)."""
    if memory is not None:
        MemoryStore(memory, get_embedder()).close()  # created (or checked) once, before the workers start
    workers = min(workers, episodes)
    jobs = [PlayJob(w, tuple(range(w + 1, episodes + 1, workers)), rom, model, config, memory, valid_actions_timeout,
                    state_hash) for w in range(workers)]
    with WorkersView(json_out, rom.stem, workers, config.max_steps, episode_line) as view:
        run_play_workers(jobs, view.event)
    if view.live:
        view.console.print(summary_table(sorted(view.results, key=lambda r: r.episode)))


@games_app.command("download")
def games_download(
    dest: Optional[Path] = typer.Option(None, "--dest", help="Target directory (default: the user games dir)."),
    url: Optional[str] = typer.Option(None, "--url", help="Archive URL (default: $JITRL_GAMES_URL or the Jericho suite)."),
) -> None:
    """Download the Jericho game suite (story files) so `jitrl play NAME` finds them."""
    target = dest or user_games_dir()
    if target.exists() and not target.is_dir():
        raise UserError(f"--dest {target} exists and is not a directory")
    files = download_suite(target, url)
    print(f"{len(files)} games in {target}")


@games_app.command("list")
def games_list(rom_dir: Optional[Path] = typer.Option(None, "--rom-dir", help="Directory searched first.")) -> None:
    """List the games jitrl can find."""
    found = list_games(rom_dir)
    if not found:
        raise UserError(f"no games in {', '.join(str(d) for d in game_dirs(rom_dir))}; run `jitrl games download`")
    for path in found:
        print(f"{path.stem}\t{path}")


def build_command() -> Any:
    """The click command of :data:`app`, as :func:`main` runs it.

    Every option is checked when it is parsed (:func:`jitrl_cli.core.validation.install_option_checks`: the
    rules of :mod:`jitrl_cli.core.validation`, and a finite value for every float option), and flags show no
    value type in ``--help`` (Typer would print ``<bool>`` after them, as if they took a value).
    """
    command = typer.main.get_command(app)
    install_option_checks(command)
    _hide_flag_types(command)
    return command


def _hide_flag_types(command: Any) -> None:
    params = list(getattr(command, "params", []))
    try:  # the --help option, which click creates (and caches) on first use
        params.append(command.get_help_option(command.context_class(command, info_name=command.name)))
    except Exception:  # another click/typer version: nothing cached to adjust
        pass
    for param in params:
        if getattr(param, "is_flag", False) and getattr(param, "metavar", None) is None:
            param.metavar = ""
    for sub in (getattr(command, "commands", None) or {}).values():
        _hide_flag_types(sub)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the app, turning every expected failure into one line and exit code 2.

    ``jitrl`` (or ``jitrl memory``) without a command prints the help and exits with 0; ``--version`` prints
    the version; shell completion (``--install-completion``, ``--show-completion``) works as Typer's.
    """
    command = build_command()
    try:
        code = command.main(args=argv, prog_name="jitrl", standalone_mode=False)
    except typer.Exit as exc:
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):  # Typer turns Ctrl-C into Exit(130)
            print("interrupted: the episode in progress was not stored", file=sys.stderr)
        code = exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        code = 130
    except typer.TyperException as exc:  # usage errors: bad option values, missing arguments
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if type(exc).__name__ == "NoArgsIsHelpError":  # no command given: the help (Typer's rich help is already printed)
            if message.strip():
                print(message)
            code = 0
        else:
            print(f"error: {' '.join(message.split()) or type(exc).__name__}", file=sys.stderr)
            code = getattr(exc, "exit_code", 2)
    except (UserError, AdapterError, MemoryStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted: the episode in progress was not stored", file=sys.stderr)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
