"""`jitrl web`: the JitRL agent on web tasks in headless Chromium (MiniWoB++ offline, WebArena by task id).

Same policy, memory and update as ``jitrl play``; only the environment differs
(``adapters/miniwob_env.py``, ``adapters/webarena_env.py``). Errors are one line (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from adapters.webarena_env import WebArenaEnv
from jitrl_cli.commands import options
from jitrl_cli.commands.view import EpisodeView, StepLogger, episode_line, success_table, summary_table
from jitrl_cli.core.config import AgentConfig
from jitrl_cli.core.validation import check_options
from jitrl_cli.errors import require
from jitrl_cli.llm.backend import Backend
from jitrl_cli.paths import default_memory_dir
from jitrl_cli.runs.evaluation import check_out_dir
from jitrl_cli.runs.runner import Episode, run_episodes
from jitrl_cli.runs.session import (
    MINIWOB_MAX_STEPS, WEBARENA_MAX_STEPS, miniwob_tasks, open_web_session, start_browser, webarena_target,
)
from memories.embedding import get_embedder
from memories.store import MemoryStore


def _task_list(suite: str, task: Optional[str], tasks: Optional[str], task_id: Optional[int]) -> list[str]:
    """MiniWoB task names to run (validated); [] for a WebArena run."""
    if task_id is not None:
        require(task is None and tasks is None, "--task-id (WebArena) cannot be combined with --task/--tasks")
        return []
    require(suite == "miniwob", f"--suite must be miniwob (WebArena runs by --task-id), got {suite!r}")
    names = miniwob_tasks(tasks.split(",") if tasks else [task] if task else [])
    require(bool(names), "give --task NAME or --tasks A,B,C (MiniWoB) or --task-id N (WebArena)")
    return names


@options.with_policy_options(options.WEB_POLICY)
@options.with_backend_options
def web(
    task: Optional[str] = typer.Option(None, "--task", help="MiniWoB++ task, e.g. click-button."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma-separated MiniWoB++ tasks, run one after another."),
    suite: str = typer.Option("miniwob", "--suite", help="Task suite for --task/--tasks (miniwob)."),
    task_id: Optional[int] = typer.Option(None, "--task-id", help="WebArena task id (0..811); needs the task's site running."),
    dataset: str = typer.Option("verified", "--dataset", help="WebArena dataset: verified or original."),
    config: Optional[Path] = typer.Option(None, "--config", help="webarena-verified JSON config with the site URLs (else $WA_SHOPPING, $WA_SHOPPING_ADMIN, ...)."),
    out: Path = typer.Option(Path("webarena-out"), "--out", help="WebArena output: <out>/ep<n>/<task_id>/{network.har,agent_response.json,eval_result.json}."),
    chromium: Optional[Path] = typer.Option(None, "--chromium", help="Chromium executable (default: $JITRL_CHROMIUM, else Playwright's, else /usr/bin/chromium)."),
    instances: int = typer.Option(0, "--instances", help="MiniWoB: cycle through this many problem instances (0 = a new one every episode)."),
    episodes: int = typer.Option(1, "--episodes", "-n", help="Episodes per task."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Steps per episode (default: 10 MiniWoB, 30 WebArena)."),
    memory: Optional[Path] = options.MEMORY,
    policy: Optional[dict] = None,  # the learning options of options.WEB_POLICY
    backend: Optional[dict] = None,  # the model options of options.BACKEND
    seed: int = typer.Option(0, "--seed", help="Seed of the action sampler and of the MiniWoB problem instances."),
    no_learn: bool = options.NO_LEARN,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object per episode on stdout, nothing else."),
    log_dir: Optional[Path] = options.LOG_DIR,
) -> None:
    """Run the JitRL agent on MiniWoB++ tasks (offline) or a WebArena task (live sites) in headless Chromium."""
    check_options(episodes=episodes, n_ctx=backend["n_ctx"], instances=instances, max_steps=max_steps)
    steps = max_steps if max_steps is not None else (WEBARENA_MAX_STEPS if task_id is not None else MINIWOB_MAX_STEPS)
    cfg = AgentConfig.from_options(**policy, learn=not no_learn, death_penalty=0.0, max_steps=steps, seed=seed)
    require(dataset in ("verified", "original"), f"--dataset must be verified or original, got {dataset!r}")
    names = _task_list(suite, task, tasks, task_id)
    if task_id is not None:
        check_out_dir(out)
    logger = StepLogger(log_dir) if log_dir else None  # before the browser starts: a bad --log-dir leaves nothing running
    # environments first: a missing site or browser fails in seconds, before the model loads or memory is created
    wa_env = None
    if task_id is not None:
        wa_env = WebArenaEnv(task_id, dataset, config, out, chromium=str(chromium) if chromium else None, max_steps=steps)
        browser = wa_env.browser
    else:
        browser = start_browser(chromium)
    store = session = None
    view = EpisodeView(json_out, logger, line=_line)
    shown: list[Episode] = []
    try:
        model = Backend.from_options(**backend)
        embedder = get_embedder()
        store = None if no_learn else MemoryStore(memory or default_memory_dir(), embedder)  # --no-learn: never opened
        session = open_web_session(model, browser, own_browser=False)
        agent = session.agent(embedder, store, cfg)
        for name in names or [f"webarena-{task_id}"]:
            target = webarena_target(wa_env, name) if wa_env is not None else session.miniwob_target(name, steps, seed, instances)
            try:
                shown += view.show(target.name, episodes, steps, lambda observer: run_episodes(
                    agent, target, session.header, range(1, episodes + 1), observer))
            finally:
                target.close()
        if view.live:
            view.console.print(summary_table([e.result for e in shown]))
            view.console.print(success_table(shown))
    finally:
        try:
            if session is not None:
                session.close()  # the scorer and the model; the browser is closed below
        finally:
            if wa_env is not None:
                wa_env.close()
            else:
                browser.close()
            if store is not None:
                store.close()


def _line(episode: Episode) -> str:
    """`jitrl web`'s plain line per episode: the task, the episode's line and its verdict."""
    result = episode.result
    return f"{episode.target.task} {episode_line(result)}; {'success' if result.victory else 'failure'}"
