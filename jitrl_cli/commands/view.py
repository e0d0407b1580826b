"""What the user sees: the Rich live view, a JSONL step logger, and the episode summary table."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from jitrl_cli.core.agent import EpisodeResult, StepLog
from jitrl_cli.errors import UserError

MAX_ROWS = 12
#: The candidates table's legend, shown under it at every step.
LEGEND = ("A = advantage Ã from memory · n = neighbours that took the action · "
          "* = exploration bonus (no neighbour took it)")


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
