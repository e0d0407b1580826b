"""What the user sees: the Rich live view, a JSONL step logger, how `play` and `web` show their episodes,
the eval progress bar, and the tables of episodes, arms and suites."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.measure import Measurement
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from jitrl_cli.core.agent import EpisodeResult, Observer, StepLog
from jitrl_cli.errors import UserError
from jitrl_cli.runs.evaluation import Run
from jitrl_cli.runs.runner import Episode

MAX_ROWS = 12
#: The candidates table's legend, shown under it at every step.
LEGEND = ("A = advantage Ã from memory · n = neighbours that took the action · "
          "* = exploration bonus (no neighbour took it)")


def _count(n: object, noun: str) -> str:
    """``"1 seed"``, ``"3 seeds"``, ``"? seeds"`` (n None: not recorded)."""
    return f"{'?' if n is None else n} {noun}{'' if n == 1 else 's'}"


def candidates_table(log: StepLog) -> Table:
    """Candidates sorted by posterior: prior p, advantage Ã, posterior p', the chosen one highlighted."""
    table = Table(expand=True, show_edge=False, pad_edge=False)
    table.add_column("action", ratio=3, overflow="ellipsis", no_wrap=True)
    table.add_column("prior p", justify="right")
    table.add_column("A", justify="right")
    table.add_column("n", justify="right")
    table.add_column("posterior p'", justify="right")
    order = sorted(range(len(log.candidates)), key=lambda i: -log.candidates[i].posterior)
    shown = order[:MAX_ROWS]
    if log.chosen not in shown:
        shown[-1] = log.chosen
    for i in shown:
        c = log.candidates[i]
        adv = f"{c.advantage:+.2f}" + ("*" if c.bonus and c.count == 0 else "")
        style = "bold black on green" if i == log.chosen else ("green" if c.advantage > 0 else "red" if c.advantage < 0 else "")
        table.add_row(("▶ " if i == log.chosen else "  ") + c.action, f"{c.prior:.3f}", adv, str(c.count), f"{c.posterior:.3f}", style=style)
    shown_of = f"{len(shown)} of {len(log.candidates)} candidates · " if len(log.candidates) > len(shown) else ""
    table.caption = shown_of + LEGEND
    return table


class LiveView:
    """The Rich live view of a run (used when stdout is a terminal and --json is off)."""

    def __init__(self, console: Console, game: str, episodes: int, max_steps: int) -> None:
        self.console = console
        self.game = game
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console,
        )
        self.episode_task = self.progress.add_task("episodes", total=episodes)
        self.step_task = self.progress.add_task("steps", total=max_steps)
        self.live = Live(self._render(None), console=console, refresh_per_second=8, transient=False)
        self.results: list[EpisodeResult] = []

    def _render(self, log: StepLog | None) -> Group:
        if log is None:
            return Group(Panel("loading…", title=f"jitrl · {self.game}"), self.progress)
        score = f"{log.score:g}" + (f"/{log.max_score:g}" if log.max_score else "")
        head = Text.assemble(
            ("episode ", "dim"), (str(log.episode), "bold"), ("  step ", "dim"), (str(log.step + 1), "bold"),
            ("  location ", "dim"), (str(log.location or "?"), "bold cyan"), ("  score ", "dim"), (score, "bold yellow"),
            ("  neighbours ", "dim"), (str(log.neighbours), "bold"), ("  V̂ ", "dim"), (f"{log.value:+.2f}", "bold"),
        )
        obs = log.observation.strip()
        if len(obs) > 600:
            obs = obs[:600] + "…"
        return Group(
            Panel(Group(head, Text(obs)), title=f"jitrl · {self.game}", border_style="blue"),
            Panel(candidates_table(log), title=f"candidates → {log.action}", border_style="green"),
            self.progress,
        )

    def __enter__(self) -> "LiveView":
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)

    def on_step(self, log: StepLog) -> None:
        """Show a step: the observation, the candidates table and the progress bars."""
        self.progress.update(self.step_task, completed=log.step + 1)
        self.live.update(self._render(log))

    def on_episode_end(self, result: EpisodeResult, logs: list[StepLog]) -> None:
        """Count the episode and print its line; the step bar keeps the steps it took (the next step restarts it)."""
        self.results.append(result)
        self.progress.advance(self.episode_task)
        self.progress.update(self.step_task, completed=result.steps)
        self.console.print(episode_line(result))


def episode_line(r: EpisodeResult) -> str:
    """One line per finished episode for terminals and logs."""
    end = "won" if r.victory else "died" if r.died else "ended"
    end += ", cautious" if r.cautious else ""  # --cautious-after: no exploration bonus, no cycle avoidance
    max_part = f"/{r.max_score:g}" if r.max_score else ""
    return (
        f"episode {r.episode}: score {r.score:g}{max_part} in {r.steps} steps ({end}); "
        f"{r.retrieval_steps}/{r.steps} steps used memory; {r.seconds_per_step_median:.2f} s/step median; "
        f"{r.tokens_evaluated_per_step:.0f} tokens evaluated/step"
    )


def summary_table(results: list[EpisodeResult]) -> Table:
    """Episode scores with mean, best and last."""
    table = Table(title="episodes")
    for col in ("episode", "score", "steps", "used memory", "s/step"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(str(r.episode), f"{r.score:g}", str(r.steps), f"{r.retrieval_steps}/{r.steps}", f"{r.seconds_per_step_median:.2f}")
    if results:
        scores = [r.score for r in results]
        table.add_section()
        table.add_row("mean", f"{statistics.fmean(scores):.1f}", "", "", "")
        table.add_row("best", f"{max(scores):g}", "", "", "")
        table.add_row("last", f"{scores[-1]:g}", "", "", "")
    return table


class StepLogger:
    """Writes one JSONL row per step to ``<log_dir>/<game>-<uuid8>.jsonl`` at each episode end."""

    def __init__(self, log_dir: Path) -> None:
        """Create ``log_dir`` (and its parents).

        Raises:
            UserError: ``log_dir`` is a file or cannot be created.
        """
        self.log_dir = Path(log_dir)
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise UserError(f"--log-dir {self.log_dir} exists and is not a directory")
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--log-dir {self.log_dir}: {exc.strerror or exc}") from None

    def on_step(self, log: StepLog) -> None:
        pass

    def on_episode_end(self, result: EpisodeResult, logs: list[StepLog]) -> None:
        path = self.log_dir / f"{result.game}-ep{result.episode}-{result.uuid[:8]}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for log in logs:
                row = log.to_json()
                row["uuid"] = result.uuid
                fh.write(json.dumps(row) + "\n")


class Observers:
    """Fans events out to several observers."""

    def __init__(self, *observers: object) -> None:
        self.observers = [o for o in observers if o is not None]

    def on_step(self, log: StepLog) -> None:
        for o in self.observers:
            o.on_step(log)

    def on_episode_end(self, result: EpisodeResult, logs: list[StepLog]) -> None:
        for o in self.observers:
            o.on_episode_end(result, logs)


class EpisodeView:
    """How `play` and `web` show their episodes: the live view when stdout is a terminal (and not --json),
    else one JSON object per episode (--json: :attr:`jitrl_cli.runs.runner.Episode.record`, nothing else on
    stdout) or one line per episode (``line(episode)``). Every step also goes to ``logger`` (--log-dir)."""

    def __init__(self, json_out: bool, logger: StepLogger | None, line: Callable[[Episode], str],
                 console: Console | None = None) -> None:
        self.console = console or Console()
        self.json_out = json_out
        self.logger = logger
        self.line = line
        self.live = self.console.is_terminal and not json_out

    def show(self, title: str, episodes: int, max_steps: int,
             play: Callable[[Observer], Iterable[Episode]]) -> list[Episode]:
        """Show the episodes ``play(observer)`` yields (``episodes`` of at most ``max_steps`` steps on ``title``)."""
        shown: list[Episode] = []
        if self.live:
            with LiveView(self.console, title, episodes, max_steps) as view:
                shown.extend(play(Observers(view, self.logger)))
            return shown
        for episode in play(Observers(self.logger)):
            shown.append(episode)
            if self.json_out:
                sys.stdout.write(json.dumps(episode.record) + "\n")
                sys.stdout.flush()
            else:
                print(self.line(episode), flush=True)
        return shown


class WorkersView:
    """How `play --workers N` shows its episodes: in a terminal, one progress row per worker (its episode and
    step) above the finished episodes' lines; else one JSON object (--json) or one line per finished episode."""

    def __init__(self, json_out: bool, title: str, workers: int, max_steps: int,
                 line: Callable[[EpisodeResult], str]) -> None:
        self.console = Console()
        self.json_out = json_out
        self.line = line
        self.live = self.console.is_terminal and not json_out
        self.results: list[EpisodeResult] = []
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=self.console, disable=not self.live)
        self.rows = [self.progress.add_task(f"{title} worker {w + 1}: waiting", total=max_steps) for w in range(workers)]
        self.title = title

    def __enter__(self) -> "WorkersView":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def event(self, event: tuple) -> None:
        """One worker event: ("step", worker, episode, steps done) or ("episode", worker, record, result)."""
        kind, worker = event[0], event[1]
        if kind == "step":
            self.progress.update(self.rows[worker], completed=event[3],
                                 description=f"{self.title} worker {worker + 1}: episode {event[2]}")
            return
        record, result = event[2], event[3]
        self.results.append(result)
        if self.json_out:
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()
        elif self.live:
            self.progress.console.print(f"worker {worker + 1}: {self.line(result)}")
        else:
            print(self.line(result), flush=True)


def success_table(episodes: list[Episode]) -> Table:
    """Per task: episodes, success rate, mean reward, median s/step (`jitrl web`)."""
    table = Table(title="tasks")
    for col in ("task", "episodes", "success", "mean reward", "s/step"):
        table.add_column(col, justify="right")
    for name in dict.fromkeys(e.target.task for e in episodes):
        rs = [e.result for e in episodes if e.target.task == name]
        table.add_row(name, str(len(rs)), f"{sum(r.victory for r in rs) / len(rs):.0%}",
                      f"{statistics.fmean(r.score for r in rs):+.2f}",
                      f"{statistics.median(r.seconds_per_step_median for r in rs):.2f}")
    return table


class EvalProgressView:
    """The progress bar of `jitrl eval` (stderr; drawn in a terminal only), an
    :class:`jitrl_cli.runs.evaluation.EvalProgress`. Outside a terminal, and without --json, each episode
    is one line on stderr instead. Use it as a context manager: the bar shows from ``start`` to ``finish`` (or the exit)."""

    def __init__(self, json_out: bool) -> None:
        self.console = Console(stderr=True)
        self.json_out = json_out
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=self.console, disable=not self.console.is_terminal)
        self.bar: Any = None
        self.label = ""
        self.running = False

    def __enter__(self) -> "EvalProgressView":
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def start(self, label: str, total: int) -> None:
        self.label = label
        self.bar = self.progress.add_task(label, total=total)
        self.progress.start()
        self.running = True

    def advance(self, count: int) -> None:
        self.progress.advance(self.bar, count)

    def episode(self, task: str | None, run: Run, number: int, result: EpisodeResult) -> None:
        if task is None:  # a game: its score (and its name where the bar is several games')
            game = "" if result.game in self.label.split() else f"{result.game} "
            description = f"{self.label} · {game}{run.name} ep {number}: score {result.score:g}"
            line = f"{game}{run.name} episode {number}: score {result.score:g} in {result.steps} steps"
        else:  # a suite's task: success or failure
            verdict = "success" if result.victory else "failure"
            description = f"{self.label} · {task} · {run.name} ep {number}: {verdict}"
            line = f"{task} {run.name} episode {number}: reward {result.score:g}, {verdict} in {result.steps} steps"
        self.progress.update(self.bar, advance=1, description=description)
        if not self.console.is_terminal and not self.json_out:
            print(line, file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.running:
            self.running = False
            self.progress.stop()


def plus_minus(d: dict[str, float], seeds: int, digits: int = 1) -> str:
    """``"12.3±4.5"`` (mean ± sample std over seeds), or the mean alone for one seed."""
    return f"{d['mean']:.{digits}f}±{d['std']:.{digits}f}" if seeds > 1 else f"{d['mean']:.{digits}f}"


def table_console(renderable: Any = None) -> Console:
    """A Rich console on stdout for printing ``renderable`` (a table) whole.

    In a terminal it is the usual console. Otherwise (a pipe or a file) it is as wide as the renderable
    needs, so that no value is cut or wrapped at Rich's default 80 columns.
    """
    console = Console()
    if console.is_terminal or renderable is None:
        return console
    wide = Console(width=100_000)
    width = Measurement.get(wide, wide.options, renderable).maximum
    return Console(width=max(80, width))


def finder_cell(s: dict[str, Any]) -> Text:
    """The valid-action finder's mean seconds per step and its timeouts (steps whose candidates were the fallback
    moves), red when there were any; "–" where the episodes did not log them (older logs, web tasks)."""
    seconds, timeouts = s.get("valid_actions_seconds"), s.get("valid_actions_timeouts")
    if seconds is None and timeouts is None:
        return Text("–")
    text = "–" if seconds is None else f"{seconds:.2f} s"
    if timeouts:
        return Text(f"{text}, {timeouts} of {s.get('steps', '?')} timed out", style="red")
    return Text(text)


FINDER_CAPTION = ("finder = the valid-action finder's mean seconds per step, and the steps where it timed out "
                  "(their candidates were the fallback moves, so those runs depend on the machine's load)")


def arms_table(summary: dict[str, Any]) -> Table:
    """The arm comparison of a summary (see :mod:`jitrl_cli.runs.report`); ± is the sample std over seeds."""
    p = summary["params"]
    table = Table(title=f"{p.get('game') or p.get('task', '')}: {p.get('episodes', '?')} episodes × {p.get('max_steps', '?')} steps")
    finder = "game" in p and any(s.get("valid_actions_seconds") is not None for s in summary["arms"].values())
    for col in ("arm", "seeds", "eps", "average", "final", "last 10", "best", "norm", "AUC", "s/step",
                *(("finder",) if finder else ())):
        table.add_column(col, justify="left" if col == "arm" else "right", overflow="fold")
    for arm, s in summary["arms"].items():
        n = len(s["seeds"])
        table.add_row(arm, str(n), str(s["episodes"]), plus_minus(s["average"], n), plus_minus(s["final"], n),
                      plus_minus(s["last10"], n), f"{s['best']:g}",
                      "–" if s["normalized"] is None else f"{s['normalized']:.3f}", f"{s['auc']:.2f}",
                      "–" if s["seconds_per_step_median"] is None else f"{s['seconds_per_step_median']:.2f}",
                      *((finder_cell(s),) if finder else ()))
    table.caption = ("mean ± sample std over seeds (n − 1); norm = average / max score; "
                     "AUC = area under the mean curve / (episodes − 1)" + (f"; {FINDER_CAPTION}" if finder else ""))
    return table


def suite_table(summary: dict[str, Any]) -> Table:
    """A suite's aggregate (:mod:`jitrl_cli.runs.web_eval`): one row per task and arm, then the mean over tasks per arm."""

    def pm(d: dict[str, float], n: int) -> str:
        return plus_minus(d, n, digits=2)

    p = summary["params"]
    table = Table(title=f"{summary['suite']}: {_count(len(p.get('tasks', [])), 'task')} × {_count(p.get('seeds'), 'seed')} × "
                        f"{_count(p.get('episodes'), 'episode')} × {_count(p.get('max_steps'), 'step')} — success rate")
    def share(s: dict[str, Any]) -> str:
        x = s.get("cross_task_fraction")
        return "–" if x is None else f"{100 * x:.0f}%"

    for col in ("task", "arm", "eps", "average", "final", "last 10", "reward", "cross-task"):
        table.add_column(col, justify="left" if col in ("task", "arm") else "right", overflow="fold")
    for name, arms in summary["tasks"].items():
        for arm, s in arms.items():
            n = len(s["seeds"])
            table.add_row(name, arm, str(s["episodes"]), pm(s["average"], n), pm(s["final"], n),
                          pm(s["last10"], n), f"{s['mean_score']:+.2f}", share(s))
    for arm, s in summary["arms"].items():
        n = len(s["seeds"])
        table.add_row("[bold]mean[/bold]", arm, str(s["episodes"]), pm(s["average"], n), pm(s["final"], n),
                      pm(s["last10"], n), f"{s['mean_score']:+.2f}", share(s))
    missing = f"; not started: {', '.join(summary['tasks_missing'])}" if summary["tasks_missing"] else ""
    table.caption = ("success rate (raw reward > 0); mean ± sample std over seeds (n − 1); mean = over tasks; "
                     "reward = mean raw reward in [−1, 1]; cross-task = share of retrieved neighbours from other "
                     f"tasks' episodes{missing}")
    return table


def games_table(summary: dict[str, Any]) -> Table:
    """A games eval's aggregate (:mod:`jitrl_cli.runs.game_suite`): per game and arm the scores, then the normalized
    means over games per arm, then the games that failed (with their reason)."""
    p = summary["params"]
    table = Table(title=f"{_count(len(p.get('games', [])), 'game')} × {_count(p.get('seeds'), 'seed')} × "
                        f"{_count(p.get('episodes'), 'episode')} × {_count(p.get('max_steps'), 'step')} — score")
    for col in ("game", "arm", "eps", "average", "final", "last 10", "norm last 10", "finder"):
        table.add_column(col, justify="left" if col in ("game", "arm") else "right", overflow="fold")
    for name, arms in summary["games"].items():
        for arm, s in arms.items():
            n = len(s["seeds"])
            norm = s.get("last10_normalized")
            table.add_row(name, arm, str(s["episodes"]), plus_minus(s["average"], n), plus_minus(s["final"], n),
                          plus_minus(s["last10"], n), "–" if norm is None else plus_minus(norm, n, digits=3),
                          finder_cell(s))
    for arm, s in summary["arms"].items():
        n = len(s["seeds"])
        table.add_row("[bold]mean[/bold]", arm, str(s["episodes"]), plus_minus(s["average"], n, digits=3),
                      plus_minus(s["final"], n, digits=3), plus_minus(s["last10"], n, digits=3),
                      plus_minus(s["last10"], n, digits=3), "")
    for name, reason in summary.get("failed", {}).items():
        table.add_row(name, "[red]failed[/red]", "", Text(reason, style="red"), "", "", "", "")
    missing = f"; not started: {', '.join(summary['games_missing'])}" if summary.get("games_missing") else ""
    table.caption = ("score mean ± sample std over seeds (n − 1); norm = / max score; mean rows = normalized score "
                     f"(score / max score) averaged over games; {FINDER_CAPTION}{missing}")
    return table


def print_summary(summary: dict[str, Any], json_out: bool) -> None:
    """Print an eval's summary: JSON on stdout, or its table (a suite's or a game's arms) and the plot's path."""
    if json_out:
        print(json.dumps(summary))
        return
    table = suite_table(summary) if "tasks" in summary else games_table(summary) if "games" in summary else arms_table(summary)
    console = table_console(table)
    console.print(table)
    console.print(f"plot: {summary['plot']}", markup=False, highlight=False, soft_wrap=True)
