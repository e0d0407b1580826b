"""`jitrl memory …`: look into, carry, trim and repair the agent's memory."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jitrl_cli.commands import options
from jitrl_cli.errors import UserError
from jitrl_cli.core.advantage import AcrossWorlds, Exploration, QEstimate, UnseenQ
from jitrl_cli.core.backup import ReturnEstimate
from jitrl_cli.core.validation import check_combinations, check_options
from jitrl_cli.paths import default_memory_dir
from jitrl_cli.runs.inspect import inspect_state, state_from_step, state_from_text
from memories.embedding import get_embedder
from memories.repair import database_problem, rebuild as do_rebuild
from memories.stats import action_summary, find_episode_ids, game_stats, list_episodes
from memories.files import REBUILD_HINT, IndexDamagedError, check_memory_root
from memories.store import MemoryStore
from memories.transfer import export_memory, import_memory, read_export

memory_app = typer.Typer(help="Inspect, export, import, prune and repair the agent's memory.", no_args_is_help=True)

GAME_OPTION = typer.Option(None, "--game", help="Only this game (memory namespace).")
JSON_OPTION = typer.Option(False, "--json", help="Print JSON for scripts instead of tables.")


def _root(memory: Optional[Path]) -> Path:
    """The memory directory (``--memory`` or the default).

    Raises:
        MemoryStoreError: if it is a file, or cannot be looked into (permission).
    """

    root = Path(memory).expanduser() if memory else default_memory_dir()
    check_memory_root(root)
    return root


def _open(memory: Optional[Path], writable: bool = False):

    return MemoryStore(_root(memory), get_embedder(), writable=writable)


# Width of a console that is not a terminal (a pipe, a file): wide enough that Rich never cuts
# or wraps a value (it would fit tables to 80 columns otherwise).
_PIPE_WIDTH = 1_000_000


def _console() -> Console:
    """The stdout console for tables: a terminal's own width; elsewhere so wide that nothing is cut."""
    console = Console()
    return console if console.is_terminal else Console(width=_PIPE_WIDTH)


def _games(store, game: Optional[str]) -> list[str]:
    if game is not None:
        return [store.require_game(game)]
    games = store.games()
    if not games:
        raise UserError(f"memory {store.root} has no episodes yet; run `jitrl play GAME` first")
    return games


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"{question} — refusing without --yes in a non-interactive shell")
    if not typer.confirm(question):
        raise typer.Abort()


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _num(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "–"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.{digits}f}"


# -- stats ----------------------------------------------------------------------------------
def _stats_table(st, store) -> Table:
    table = Table(title=f"{st.game}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    r = st.returns
    score = _num(st.best_score) + (f" / {_num(st.max_score)}" if st.max_score else "")
    rows = [
        ("episodes", f"{st.episodes}  ({(st.first_episode_at or '')[:16]} … {(st.last_episode_at or '')[:16]})"),
        ("steps", str(st.steps)),
        ("distinct actions", str(st.distinct_actions)),
        ("distinct states", f"{st.distinct_states} state keys, {st.distinct_world_states} world states"),
        ("return G", (f"min {_num(r['min'])}  p10 {_num(r['p10'])}  p50 {_num(r['p50'])}  p90 {_num(r['p90'])}  "
                      f"max {_num(r['max'])}  mean {_num(r['mean'], 3)}  G>0 {r['positive']:.1%}") if r else "–"),
        ("best episode score", f"{score} (episode {st.best_episode}); mean {_num(st.mean_score)}"),
        ("disk", f"rows {_bytes(st.data_bytes)}, index {_bytes(st.index['file_bytes'])}"),
        ("index", (f"hnswlib {st.index['space']}, M={st.index['M']}, ef_construction={st.index['ef_construction']}, "
                   f"ef={st.index['ef_search']}, {st.index['count']} / {st.index['capacity']} elements")),
        ("embedder", f"{store.embedder.name}, dim {store.dim}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


@memory_app.command("stats")
def stats(memory: Optional[Path] = options.MEMORY, game: Optional[str] = GAME_OPTION, json_out: bool = JSON_OPTION) -> None:
    """Per game: episodes, steps, distinct actions and states, returns, best score, disk size, index, embedder."""

    with _open(memory) as store:
        games = store.games() if game is None and json_out else _games(store, game)  # JSON: an empty memory is []
        all_stats = [game_stats(store, g) for g in games]
        db_bytes = sum(p.stat().st_size for p in store.root.glob("memory.sqlite*")
                       if p.is_file() and ".damaged-" not in p.name)
        if json_out:
            print(json.dumps({"memory": str(store.root), "database_bytes": db_bytes, "schema_version": int(store.meta["schema_version"]),
                              "embedder": store.embedder.name, "dim": store.dim, "games": [s.to_json() for s in all_stats]}))
            return
        console = _console()
        console.print(f"memory [bold]{store.root}[/] — database {_bytes(db_bytes)}, schema v{store.meta['schema_version']}")
        for st in all_stats:
            console.print(_stats_table(st, store))


# -- list -----------------------------------------------------------------------------------
def _params_text(params: dict) -> str:
    if not params:
        return ""
    if params.get("learn") is False:
        return "static"
    keys = [("beta", "β"), ("gamma", "γ"), ("k", "k"), ("min_similarity", "s"), ("temperature", "T")]
    text = " ".join(f"{label}{_num(params[key])}" for key, label in keys if key in params)
    return f"{text} {params.get('exploration', '')}".strip()


@memory_app.command("list")
def list_(
    memory: Optional[Path] = options.MEMORY,
    game: Optional[str] = GAME_OPTION,
    limit: int = typer.Option(50, "--limit", help="Show the most recent N episodes (0 = all)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Stored episodes: id, date, game, score, steps, model and the parameters used."""

    if limit < 0:
        raise UserError(f"--limit must be >= 0, got {limit}")
    with _open(memory) as store:
        if game is not None:
            store.require_game(game)
        rows = list_episodes(store, game, limit or None)
        if json_out:
            for row in rows:
                print(json.dumps(row.to_json()))
            return
        if not rows:
            raise UserError(f"memory {store.root} has no episodes yet; run `jitrl play GAME` first")
        console = _console()
        short = console.is_terminal  # abbreviate uuid and model only for a person at a terminal
        table = Table(title=f"episodes in {store.root}" + (f" ({game})" if game else ""))
        for col in ("id", "uuid", "finished (UTC)", "game", "score", "steps", "model", "parameters"):
            table.add_column(col, justify="right" if col in ("id", "score", "steps") else "left",
                             no_wrap=col != "parameters")
        for r in rows:
            score = _num(r.score) + (f"/{_num(r.max_score)}" if r.max_score else "")
            model = (r.model or "").removesuffix(".gguf")
            table.add_row(str(r.id), r.uuid[:8] if short else r.uuid, r.finished_at.replace("T", " ")[:16], r.game,
                          score, str(r.steps), model[:18] if short else model, _params_text(r.params))
        console.print(table)


# -- inspect --------------------------------------------------------------------------------
@memory_app.command("inspect")
def inspect(
    memory: Optional[Path] = options.MEMORY,
    game: Optional[str] = GAME_OPTION,
    state: Optional[str] = typer.Option(None, "--state", help="A state as text: an observation, or a full state key ('location: … | …'; a web page's 'goal: … | …')."),
    step: Optional[str] = typer.Option(None, "--step", help="A stored step EPISODE:STEP (episode id or uuid prefix)."),
    k: int = typer.Option(options.K.default, "--k", help="Neighbours retrieved (as `play --k`)."),
    min_similarity: float = typer.Option(0.5, "--min-similarity", help="Similarity threshold (as `play --min-similarity`)."),
    beta: float = typer.Option(options.BETA.default, "--beta", help="β used for the exp(β·Ã) column (as `play --beta`)."),
    exploration: str = typer.Option("none", "--exploration", help="Bonus for candidates no neighbour took: none, ucb or paper (λ=1)."),
    alpha: float = typer.Option(1.0, "--alpha", help="α: exploration bonus scale."),
    q_estimate: str = options.Q_ESTIMATE,
    across_worlds: str = options.ACROSS_WORLDS,
    returns: str = options.RETURNS,
    gamma: float = typer.Option(options.GAMMA.default, "--gamma", help="γ of the backup (with --returns backup; as `play --gamma`)."),
    exact_match: bool = options.EXACT_MATCH,
    exact_all: bool = options.EXACT_ALL,
    fill_neighbours: bool = options.FILL_NEIGHBOURS,
    unseen_q: str = options.UNSEEN_Q,
    backoff_states: bool = options.BACKOFF_STATES,
    avoid_deaths: bool = options.AVOID_DEATHS,
    avoid_deaths_own: bool = options.AVOID_DEATHS_OWN,
    avoid_deaths_horizon: int = options.AVOID_DEATHS_HORIZON,
    backoff_actions: bool = typer.Option(False, "--backoff-actions/--no-backoff-actions", help="Web memories: value a candidate no neighbour took by the actions on the same kind of element (as `web --backoff-actions`, its default)."),
    action: list[str] = typer.Option([], "--action", help="Extra candidate action(s) to evaluate (repeatable)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """The k nearest stored steps of a state and the Q̂, V̂, A table the agent would compute there.

    Without --state or --step: an overview of each game and its best actions."""

    if state is not None and step is not None:
        raise UserError("give --state or --step, not both")
    check_options(k=k, min_similarity=min_similarity, exploration=exploration, q_estimate=q_estimate,
                  returns=returns, gamma=gamma, beta=beta, alpha=alpha, unseen_q=unseen_q,
                  avoid_deaths_horizon=avoid_deaths_horizon, across_worlds=across_worlds)
    check_combinations(avoid_deaths_horizon=avoid_deaths_horizon, avoid_deaths=avoid_deaths,
                       avoid_deaths_own=avoid_deaths_own, across_worlds=across_worlds, q_estimate=q_estimate)
    if Exploration(exploration) is Exploration.puct:
        raise UserError("--exploration puct weighs its bonus by the model's prior, which memory inspect does not compute; "
                        "use none, ucb or paper")
    with _open(memory) as store:
        if state is None and step is None:
            _overview(store, game, json_out)
            return
        if step is not None:
            target = state_from_step(store, step)
            if game is not None and game != target.game:
                raise UserError(f"step {step} belongs to game {target.game!r}, not {game!r}")
        else:
            games = _games(store, game)
            if len(games) > 1:
                raise UserError(f"the memory holds several games ({', '.join(games)}); pick one with --game")
            target = state_from_text(store, games[0], state)
        result = inspect_state(store, target, k=k, min_similarity=min_similarity, beta=beta,
                               exploration=Exploration(exploration), alpha=alpha, extra_actions=action,
                               q_estimate=QEstimate(q_estimate), across_worlds=AcrossWorlds(across_worlds),
                               returns=ReturnEstimate(returns), gamma=gamma, exact_match=exact_match, exact_all=exact_all,
                               fill=fill_neighbours, unseen_q=UnseenQ(unseen_q),
                               backoff_states=backoff_states, backoff_actions=backoff_actions, avoid_deaths=avoid_deaths,
                               avoid_deaths_own=avoid_deaths_own, avoid_deaths_horizon=avoid_deaths_horizon)
        if json_out:
            print(json.dumps(result.to_json()))
            return
        _print_inspection(result)


def _overview(store, game: Optional[str], json_out: bool) -> None:

    games = _games(store, game)
    if json_out:
        print(json.dumps({g: {"stats": game_stats(store, g).to_json(),
                              "best_actions": [a.__dict__ for a in action_summary(store, g)]} for g in games}))
        return
    console = _console()
    for g in games:
        console.print(_stats_table(game_stats(store, g), store))
        table = Table(title=f"{g}: actions with the highest mean return G", title_justify="left")
        for col in ("action", "taken", "mean G", "max G", "mean reward"):
            table.add_column(col, justify="left" if col == "action" else "right")
        for a in action_summary(store, g):
            table.add_row(a.action, str(a.count), f"{a.mean_return:.3f}", _num(a.max_return), f"{a.mean_reward:.3f}")
        console.print(table)
    console.print("Inspect a state with --state TEXT or --step EPISODE:STEP.")


def _print_inspection(result) -> None:
    console = _console()
    short = console.is_terminal  # state keys are cut only for a person at a terminal
    key = result.state_key[:200] if short else result.state_key
    console.print(f"[bold]{result.game}[/] — {result.source}: [italic]{escape(key)}[/]")
    p = result.params
    if not result.neighbours:
        console.print(f"no stored step within similarity ≥ {p['min_similarity']}: the agent would use its prior unchanged")
        return
    nb = Table(title=f"{len(result.neighbours)} nearest stored steps (k={p['k']}, similarity ≥ {p['min_similarity']})", title_justify="left")
    for col in ("similarity", "action", "reward", "return G", "episode:step"):
        nb.add_column(col, justify="right" if col in ("similarity", "reward", "return G") else "left")
    nb.add_column("state key", no_wrap=True, overflow="ellipsis", max_width=48 if short else None)
    for n in result.neighbours:
        nb.add_row(f"{n['similarity']:.3f}", n["action"], _num(n["reward"]), _num(n["return"], 3),
                   f"{n['episode']}:{n['step']}", n["state_key"])
    console.print(nb)
    at = Table(title=f"V̂(s) = {result.value:.3f}; A = Q̂ − V̂, Ã = A / max|A|, prior × exp(β·Ã) with β = {p['beta']}",
               title_justify="left",
               caption="candidates: the actions these steps and similar states took, and --action; not necessarily this "
                       "state's valid actions (a run's own steps: replay it with play --seed S --episodes N --log-dir DIR)",
               caption_justify="left")
    for col in ("action", "n(a)", "Q̂", "A", "Ã", "exp(β·Ã)"):
        at.add_column(col, justify="left" if col == "action" else "right")
    backed_from = {(True, False): "similar states", (False, True): "back-off key"}.get(
        (p["backoff_states"], p["backoff_actions"]), "similar states or back-off key")
    for a in result.actions:
        style = "green" if a.normalized > 0 else "red" if a.normalized < 0 else ""
        q = _num(a.q, 3) + (" (bonus)" if a.bonus and a.count == 0 else f" ({backed_from})" if a.backed_off else "")
        at.add_row(a.action, str(a.count), q, f"{a.advantage:+.3f}", f"[{style}]{a.normalized:+.3f}[/]" if style else f"{a.normalized:+.3f}",
                   f"{a.weight:.2f}")
    console.print(at)


# -- export / import ------------------------------------------------------------------------
@memory_app.command("export")
def export(
    path: Path = typer.Argument(..., help="File to write (JSON Lines; gzip when it ends in .gz)."),
    memory: Optional[Path] = options.MEMORY,
    game: Optional[str] = GAME_OPTION,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write episodes and steps (with the embedder's name and dimension) to a portable file."""

    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise UserError(f"directory {path.parent} does not exist")
    console = Console(stderr=True)
    with _open(memory) as store:
        games = _games(store, game)
        with _progress(console) as progress:
            task = progress.add_task("export", total=None)
            episodes, steps = export_memory(store, path, game, lambda d, t: progress.update(task, completed=d, total=t))
    print(f"exported {episodes} episodes, {steps} steps ({', '.join(games)}) to {path}")


@memory_app.command("import")
def import_(
    path: Path = typer.Argument(..., help="A file written by `jitrl memory export`."),
    memory: Optional[Path] = options.MEMORY,
    partial: bool = typer.Option(False, "--partial", help="Import the whole episodes of a file cut short "
                                 "(fewer episodes or steps than its header says) instead of refusing it."),
) -> None:
    """Add the episodes of an export file (already stored ones are skipped) and rebuild the indexes.

    A file that holds fewer (or more) episodes or steps than its header says is refused
    unless --partial is given; nothing is written then."""

    if not path.is_file():
        raise UserError(f"no such file: {path}")
    root = _root(memory)
    embedder = get_embedder()
    read_export(path, embedder.dim, embedder.name, partial=partial)  # validate before creating anything
    console = Console(stderr=True)
    with MemoryStore(root, embedder) as store, _progress(console) as progress:
        task = progress.add_task("index", total=None)
        report = import_memory(store, path, lambda g, d, t: progress.update(task, description=f"index {g}", completed=d, total=t),
                               partial=partial)
    if report.short_by:
        print(f"warning: {path} is cut short ({report.short_by}); imported the whole episodes it holds", file=sys.stderr)
    print(f"imported {report.episodes_added} new episodes ({report.steps_added} steps) from {path}; "
          f"{report.episodes_present} were already stored")


# -- prune / clear --------------------------------------------------------------------------
def _parse_date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--before must be an ISO date such as 2026-11-01 or 2026-11-01T12:00, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _selected_episodes(store, game, keep_last, before, episode) -> list[int]:

    games = _games(store, game)
    rows = [r for g in games for r in list_episodes(store, g)]
    if keep_last is not None:
        chosen = []
        for g in games:
            of_game = [r for r in rows if r.game == g]
            chosen += [r.id for r in of_game[: max(0, len(of_game) - keep_last)]]
        return chosen
    if before is not None:
        cutoff = _parse_date(before)
        return [r.id for r in rows if datetime.fromisoformat(r.finished_at) < cutoff]
    chosen = []
    for ref in episode:
        hits = find_episode_ids(store, ref, game)
        if not hits:
            raise UserError(f"no episode {ref!r} in memory {store.root}" + (f" for game {game!r}" if game else ""))
        if len(hits) > 1:
            raise UserError(f"episode prefix {ref!r} is ambiguous ({len(hits)} episodes)")
        chosen += hits
    return list(dict.fromkeys(chosen))


@memory_app.command("prune")
def prune(
    memory: Optional[Path] = options.MEMORY,
    game: Optional[str] = GAME_OPTION,
    keep_last: Optional[int] = typer.Option(None, "--keep-last", help="Keep only the N most recent episodes of each game."),
    before: Optional[str] = typer.Option(None, "--before", help="Delete episodes finished before this ISO date (UTC)."),
    episode: list[str] = typer.Option([], "--episode", help="Delete this episode (id or uuid prefix; repeatable)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be deleted."),
) -> None:
    """Delete selected episodes and their steps, then rebuild the touched indexes."""
    selectors = sum([keep_last is not None, before is not None, bool(episode)])
    if selectors != 1:
        raise UserError("give exactly one of --keep-last N, --before DATE, --episode ID")
    if keep_last is not None and keep_last < 0:
        raise UserError(f"--keep-last must be >= 0, got {keep_last}")
    with _open(memory) as store:
        ids = _selected_episodes(store, game, keep_last, before, episode)
        steps = store.count_steps_of_episodes(ids)
    if not ids:
        print("nothing to prune")
        return
    question = f"delete {len(ids)} episodes ({steps} steps) from {_root(memory)}?"
    if dry_run:
        print(f"would {question[:-1]}")
        return
    _confirm(question, yes)
    _delete(memory, ids)


def _delete(memory: Optional[Path], ids: list[int]) -> None:
    console = Console(stderr=True)
    with _open(memory, writable=True) as store, _progress(console) as progress:
        task = progress.add_task("rebuild index", total=None)
        deleted = store.delete_episodes(ids, lambda d, t: progress.update(task, completed=d, total=t))
        left = store.count_episodes()
    print(f"deleted {deleted} episodes; {left} remain")


@memory_app.command("clear")
def clear(
    memory: Optional[Path] = options.MEMORY,
    game: Optional[str] = GAME_OPTION,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete every episode (of one game, or all) from the memory."""
    with _open(memory) as store:
        games = _games(store, game)
        ids = store.episode_ids(games)
        steps = store.count_steps(game)
    _confirm(f"delete all {len(ids)} episodes ({steps} steps) of {', '.join(games)} from {_root(memory)}?", yes)
    _delete(memory, ids)


# -- rebuild / check ------------------------------------------------------------------------
@memory_app.command("rebuild")
def rebuild(memory: Optional[Path] = options.MEMORY) -> None:
    """Rebuild the hnswlib indexes from the SQLite rows; salvage whole episodes from a damaged database."""

    console = Console(stderr=True)
    with _progress(console) as progress:
        task = progress.add_task("rebuild", total=None)
        report = do_rebuild(_root(memory), get_embedder(),
                            lambda g, d, t: progress.update(task, description=f"{g}", completed=d, total=t))
    if report.salvaged:
        print(_salvage_summary(report))
    for game, n in report.indexed.items():
        print(f"{game}: indexed {n} steps")
    for name in report.removed_indexes:
        print(f"removed index/{name} (no rows)")
    if not report.indexed:
        print("no steps stored; nothing to index")


def _salvage_summary(report) -> str:
    """One line: what a salvage kept and lost, counted honestly."""
    rebuilt = (f" ({report.episodes_rebuilt} rebuilt from their steps: their uuid, model, parameters and dates"
               " were lost)") if report.episodes_rebuilt else ""
    if report.episodes_table_damaged and not report.episodes_kept and not report.episodes_lost:
        counts = "no episode or step could be read from it"
    else:
        counts = (f"kept {report.episodes_kept} whole episodes{rebuilt} and {report.steps_kept} steps, "
                  f"lost {report.episodes_lost} episodes ({report.steps_lost} readable steps of incomplete episodes "
                  "left behind)")
        if report.episodes_table_damaged:
            counts += ", and any episode of which no row or step could be read"
    return f"the database was damaged: {counts}; the damaged file is kept as {report.damaged_file}"


@memory_app.command("check")
def check(memory: Optional[Path] = options.MEMORY, json_out: bool = JSON_OPTION) -> None:
    """Verify the database (SQLite quick_check) and that every index agrees with the rows; exit 1 on problems."""

    root = _root(memory)
    problem = database_problem(root / "memory.sqlite") if check_memory_root(root) else None
    if problem:
        if json_out:
            print(json.dumps({"database": problem, "indexes": {}}))
        else:
            print(f"{problem}; {REBUILD_HINT} to salvage it")
        raise typer.Exit(1)
    report: dict[str, dict] = {}
    with _open(memory) as store:
        for g in store.games():
            try:
                report[g] = store.check_index(g)
            except IndexDamagedError as exc:  # a damaged index file is a problem check reports
                report[g] = {"error": str(exc)}
    if json_out:
        print(json.dumps({"database": "ok", "indexes": report}))
    else:
        for g, r in report.items():
            if "error" in r:
                print(f"{g}: {r['error']}")
                continue
            state = "ok" if not r["stale"] and not r["missing"] else (
                f"{r['missing']} rows not yet indexed (caught up on next use)" if not r["stale"] else
                f"{r['stale']} labels without rows of {g} (the index disagrees with the rows; it is rebuilt on next use,"
                f" or {REBUILD_HINT})")
            print(f"{g}: {r['rows']} rows, {r['indexed']} indexed — {state}")
    if any("error" in r or r["stale"] for r in report.values()):
        raise typer.Exit(1)
