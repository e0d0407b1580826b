"""`jitrl eval --games zork1,detective,...` (or ``--games all``): the arms × seeds × episodes eval on several games.

Layout of a games directory ``OUT``::

    run.json            the settings: games (names, in order), episodes, max_steps, arms, seeds, seed, model,
                        the agent options and state_hash (those of a single-game eval, ``games`` instead of ``game``)
    <game>/             a complete eval directory per game, exactly as ``jitrl eval GAME --out OUT/<game>``
                        writes it (:mod:`jitrl_cli.runs.evaluation`, :func:`jitrl_cli.runs.report.write_report`)
    failed.json         game → the one-line reason its last attempt failed (absent when none failed)
    summary.json, curve.png   the aggregate over games (:func:`write_games_report`)

How it runs (:func:`eval_games`): games one after another, each with
:func:`jitrl_cli.runs.game_eval.eval_game` (its own model load, game and fresh memories per arm and seed,
resumable); a game whose episodes are all logged is not opened again. With ``--workers N`` every game's runs
(arm × seed) are jobs of one pool of N processes, started game by game: a worker whose run ends takes the next
job, of the same game or the next, so no core waits for a game's slowest run (:func:`_eval_games_in_one_pool`).
A game that fails (a story file Jericho does not support, a valid-action finder that does not start or dies,
a pool worker that dies while playing one of its runs, ...) is recorded in ``failed.json`` with its one-line
reason and the other games run; a later run retries it.
``--games all`` = every story file of the games directories (:func:`jitrl_cli.paths.list_games`).

The aggregate ``OUT/summary.json``::

    out, measure ("normalized score"), measure_description, std, params (OUT/run.json), plot
    games:          game → arm → {episodes, seeds, average, final, last10, best, max_score, normalized, auc,
                    auc_normalized, mean_score, success_rate, steps, valid_actions_timeouts, valid_actions_seconds,
                    last10_normalized}, from OUT/<game>/summary.json (last10_normalized = last10 / max_score, mean ±
                    std over seeds; a slow valid-action finder shows in the last three: a game whose finder times
                    out is reported there, and one whose finder fails in ``failed``)
    games_missing:  games of run.json with no episode logs yet (and not failed)
    failed:         game → one-line reason (from failed.json)
    arms:           arm → {games, seeds, episodes, curve_mean, curve_std, average, final, last10, auc,
                    mean_score, success_rate, seconds_per_step_median}

The aggregate measure is the normalized score score / max_score of every episode; per arm, over the games
that have logs and a max score, :func:`jitrl_cli.runs.report.aggregate_arm` takes the mean over games per
seed and episode (y[s, e]), then the curve (mean ± sample std over seeds), average, final and last10
as in the MiniWoB++ suite aggregate (:mod:`jitrl_cli.runs.web_eval`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapters.jericho_env import check_story_file
from jitrl_cli.core.config import AgentConfig
from jitrl_cli.errors import UserError, require
from jitrl_cli.llm.backend import Backend
from jitrl_cli.paths import list_games, require_game
from jitrl_cli.runs.evaluation import (
    EvalProgress, Run, check_run_file, episodes_path, has_logs, make_runs, read_episodes, run_lists,
)
from jitrl_cli.runs.game_eval import eval_game
from jitrl_cli.runs.parallel import GameJob, run_game_jobs_apart
from jitrl_cli.runs.report import STD_DESCRIPTION, aggregate_arm, load_runs, plot_curves, save_report, write_report

MEASURE = "normalized score"
MEASURE_DESCRIPTION = ("normalized score: the episode's score / the game's max score, per episode, "
                       "mean over games, then mean ± sample std over seeds")
FAILED = "failed.json"


def game_names(games: str, rom_dir: Path | None) -> list[Path]:
    """The story files of ``--games`` (a comma list of names or story files, or ``all``), in order, repeats dropped.

    Raises:
        UserError: an empty list, an unknown game, or ``all`` with no games found.
    """
    if games.strip() == "all":
        roms = list_games(rom_dir)
        require(bool(roms), "--games all: no story files in the games directories; run `jitrl games download` or set JITRL_GAMES_DIR")
        return roms
    names = list(dict.fromkeys(g.strip() for g in games.split(",") if g.strip()))
    require(bool(names), f"--games must be a comma list of games (e.g. zork1,detective) or all; got {games!r}")
    roms = [require_game(n, rom_dir) for n in names]
    stems = [r.stem for r in roms]
    require(len(set(stems)) == len(stems), f"--games names one game twice: {games!r}")
    return roms


def game_params(params: dict[str, Any], game: str) -> dict[str, Any]:
    """A game directory's ``run.json``: the suite's settings with ``game`` instead of ``games`` (a single-game eval's)."""
    return {k: v for k, v in params.items() if k != "games"} | {"game": game}


def _read_failed(out: Path) -> dict[str, str]:
    try:
        data = json.loads((out / FAILED).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_failed(out: Path, failed: dict[str, str]) -> None:
    path = out / FAILED
    if failed:
        path.write_text(json.dumps(failed, indent=2, sort_keys=True) + "\n")
    elif path.exists():
        path.unlink()


def one_line(exc: BaseException) -> str:
    """``exc`` as one line: its message's first line (with the type when the message is empty or not a user error's)."""
    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, UserError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def eval_games(*, games: str, rom_dir: Path | None, params: dict[str, Any], config: AgentConfig, out: Path, episodes: int,
               arms: list[str], seeds: int, backend: Backend, valid_actions_timeout: float, state_hash: str,
               force: bool, progress: EvalProgress | None = None, workers: int = 1,
               ray: str | None = None) -> dict[str, Any]:
    """Run (or resume) the games eval into ``out``, write every report and return the aggregate.

    Args:
        games: ``--games`` (see :func:`game_names`).
        params: the settings of a single-game eval without ``game`` (episodes, max_steps, arms, seeds, seed,
            model, the policy options, state_hash); ``OUT/run.json`` adds ``games``.
        config: the jitrl arm's AgentConfig; the rest as for :func:`jitrl_cli.runs.game_eval.eval_game`.
        force: continue in ``out`` (and its game directories) even if they hold other settings.

    Raises:
        UserError: bad ``--games``, other settings in ``out`` (before anything is played), or no game has logs.
    """
    roms = game_names(games, rom_dir)
    suite = {"games": [r.stem for r in roms], **params}
    check_run_file(out, suite, force)
    for rom in roms:
        check_run_file(out / rom.stem, game_params(suite, rom.stem), force)
    runs = make_runs(arms, config.seed, seeds)
    failed = _read_failed(out)
    todo: dict[Path, list[Run]] = {}  # game → its runs with episodes missing
    for rom in roms:
        unfinished = [r for r in runs if len(read_episodes(episodes_path(out / rom.stem, r))) < episodes]
        if unfinished:
            todo[rom] = unfinished
        else:
            failed.pop(rom.stem, None)
    if workers > 1 and not ray:
        _eval_games_in_one_pool(todo, out, episodes, config, backend, valid_actions_timeout, state_hash,
                                workers, progress, failed)
        todo = {}
    for rom in todo:
        try:
            check_story_file(rom)  # an unsupported story file fails before the model is loaded
            eval_game(rom=rom, out=out / rom.stem, runs=runs, episodes=episodes, config=config, backend=backend,
                      valid_actions_timeout=valid_actions_timeout, state_hash=state_hash, progress=progress,
                      workers=workers, ray=ray)
        except Exception as exc:  # noqa: BLE001 — one game's failure is reported, not fatal
            failed[rom.stem] = one_line(exc)
            if progress is not None:
                progress.finish()
        else:
            failed.pop(rom.stem, None)
        _write_failed(out, failed)
    _write_failed(out, failed)
    return write_games_report(out)


def _eval_games_in_one_pool(todo: dict[Path, list[Run]], out: Path, episodes: int, config: AgentConfig,
                            backend: Backend, valid_actions_timeout: float, state_hash: str, workers: int,
                            progress: EvalProgress | None, failed: dict[str, str]) -> None:
    """Play ``todo`` (game's story file → its runs with episodes missing) as jobs of one pool of ``workers``
    processes (:func:`jitrl_cli.runs.parallel.run_game_jobs_apart`): the games' jobs start in order, and a worker
    whose run ends takes the next job at once, so no core waits for the slowest run of a game. ``failed`` (game →
    one line) gets each game whose story file or whose first failing job failed, and loses each game that finished."""
    jobs: list[tuple[GameJob, Path]] = []
    for rom, unfinished in todo.items():
        try:
            check_story_file(rom)  # an unsupported story file fails before any worker loads the model
        except Exception as exc:  # noqa: BLE001 — one game's failure is reported, not fatal
            failed[rom.stem] = one_line(exc)
            continue
        jobs += [(GameJob(rom, run, episodes, config, backend, valid_actions_timeout, state_hash), out / rom.stem)
                 for run in unfinished]
    if not jobs:
        return
    if progress is not None:
        games = len({job.rom for job, _ in jobs})
        progress.start(f"eval {games} game{'s' * (games > 1)}", len(jobs) * episodes)
    errors = run_game_jobs_apart(jobs, workers, progress)
    if progress is not None:
        progress.finish()
    for game in dict.fromkeys(job.rom.stem for job, _ in jobs):
        error = next((e for (job, _), e in zip(jobs, errors) if job.rom.stem == game and e is not None), None)
        if error is None:
            failed.pop(game, None)
        else:
            failed[game] = one_line(error)


def is_games_dir(out: Path) -> bool:
    """Whether ``out`` was written by ``jitrl eval --games`` (its run.json lists ``games``)."""
    return run_lists(out, "games")



def _max_score(runs: dict[str, dict[int, list[dict[str, Any]]]]) -> float | None:
    return next((float(r["max_score"]) for seeds in runs.values() for rows in seeds.values() for r in rows
                 if r.get("max_score")), None)


def summarize_games(out: Path, game_summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The aggregate summary of a games directory (fields in the module docstring); writes nothing.

    Args:
        game_summaries: game → its summary (:func:`jitrl_cli.runs.report.summarize`), for the games with logs.
    """
    params = json.loads((out / "run.json").read_text())
    names = list(params["games"])
    failed = _read_failed(out)
    keys = ("episodes", "seeds", "average", "final", "last10", "best", "max_score", "normalized", "auc",
            "auc_normalized", "mean_score", "success_rate", "steps", "valid_actions_timeouts", "valid_actions_seconds")
    table: dict[str, dict[str, Any]] = {}
    for n, gs in game_summaries.items():
        table[n] = {}
        for arm, s in gs["arms"].items():
            m = s.get("max_score")
            table[n][arm] = {k: s.get(k) for k in keys} | {
                "last10_normalized": {k: v / m for k, v in s["last10"].items()} if m else None}
    summary: dict[str, Any] = {
        "out": str(out), "measure": MEASURE, "measure_description": MEASURE_DESCRIPTION, "std": STD_DESCRIPTION,
        "params": params, "games": table,
        "games_missing": [n for n in names if n not in game_summaries and n not in failed],
        "failed": {n: failed[n] for n in names if n in failed},
        "arms": {},
    }
    logs = {n: load_runs(out / n) for n in game_summaries}  # game → arm → seed → rows
    maxima = {n: _max_score(logs[n]) for n in logs}
    found = [a for n in logs for a in logs[n]]
    for arm in dict.fromkeys([a for a in params.get("arms", []) if a in found] + found):
        groups = {n: logs[n][arm] for n in logs if arm in logs[n] and maxima[n]}
        agg = aggregate_arm(groups, lambda n, r: float(r["score"]) / maxima[n])
        if agg is None:
            continue
        summary["arms"][arm] = {"games": agg["groups"], "seeds": agg["seeds"], "episodes": agg["episodes"],
                                **{k: agg[k] for k in ("curve_mean", "curve_std", "average", "final", "last10", "auc",
                                                       "mean_score", "success_rate", "seconds_per_step_median")}}
    return summary


def plot_games(summary: dict[str, Any], path: Path) -> Path:
    """Write the aggregate ``curve.png``: per arm, the normalized score per episode averaged over games (± std over seeds)."""
    arms = summary["arms"]
    title = (f"jitrl eval: normalized score per episode, mean over {len(summary['games'])} games"
             " (± sample std over seeds)")
    unit = f"{len(next(iter(arms.values()))['games'])} games × " if arms else ""
    return plot_curves(arms, path, title=title, ylabel="score / max score", unit=unit)


def write_games_report(out: Path) -> dict[str, Any]:
    """Re-render every game that has logs (its summary.json and curve.png) and the aggregate; return the aggregate.

    Raises:
        UserError: ``out`` is not a games directory, no game has episode logs yet, or ``out`` is not writable.
    """
    require(is_games_dir(out), f"{out} is not a games eval directory (no run.json with games)")
    names = json.loads((out / "run.json").read_text())["games"]
    summaries = {n: write_report(out / n) for n in names if has_logs(out / n)}
    if not summaries:
        failed = _read_failed(out)
        why = f" (failed: {'; '.join(f'{k}: {v}' for k, v in failed.items())})" if failed else ""
        raise UserError(f"no episode logs in {out}/<game>/episodes{why}")
    return save_report(summarize_games(out, summaries), out, plot_games)
