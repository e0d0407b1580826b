"""`jitrl eval --suite miniwob --tasks A,B,C`: the arms × seeds × episodes eval on MiniWoB++ tasks.

Layout of a suite directory ``OUT``::

    run.json                       the suite's settings: suite, tasks, arms, seeds, episodes, model, agent options
    memory/<arm>-seed<s>/          the run's one memory for every task (``"memory": "suite"``, the default:
                                   the paper's cross-task memory; episodes record their task)
    <task>/                        a complete eval directory per task (see :mod:`jitrl_cli.runs.evaluation`):
        run.json                   the suite's settings with ``task`` instead of ``tasks``
        episodes/<arm>-seed<s>.jsonl
        memory/<arm>-seed<s>/      only with ``--task-memory`` (``"memory": "task"``): fresh per task
        summary.json, curve.png    written by :func:`jitrl_cli.runs.report.write_report`
    summary.json, curve.png        the aggregate over tasks (:func:`write_suite_report`)

How it runs (:func:`eval_suite`; the command draws the progress and prints the aggregate): one job
(:class:`WebJob`) per run (arm × seed) plays the tasks one after another in suite order, each with
:func:`jitrl_cli.runs.evaluation.run_eval` in one headless Chromium with one model
(:class:`jitrl_cli.runs.session.WebSession`, as ``jitrl web``). The jobs run one after another, or in
``--workers N`` spawned processes (:func:`jitrl_cli.runs.parallel.run_jobs`): a run's tasks, log lines
and memory belong to its job alone, so the logs are the same either way. With more workers than runs,
each run's tasks are dealt out among the spare workers (:func:`shard_jobs`); the shards of a run share
its one suite memory, each episode reading what the others have stored so far (the store is safe for
concurrent writers), so which neighbours an episode sees then depends on timing. Resumable: re-running the
same command plays only the missing episodes of every task; when none is missing the model and browser
are not even started. A suite memory is reconciled with the run's logs of every task before playing.
Episode e (1-based) of the run with seed s plays MiniWoB problem instance (page seed) s · 100 000 + e − 1
(:func:`adapters.miniwob_env.page_seed`; ``page_seed_stride`` in run.json) whatever the arm: the problem
``jitrl web --task T --seed s`` plays in its episode e. So arms are
compared on the same problems, and a resumed run plays the same problems as an uninterrupted one.
The memory namespace is ``miniwob``, as for ``jitrl web``. The Jericho-only options (``--rom-dir``,
``--death-penalty``, ``--valid-actions-timeout``) do not apply; ``--max-steps`` defaults to 10.

Measure: every logged episode carries ``jitrl web --json``'s fields: ``score`` = the page's raw
reward in [−1, 1] (−1 when the step limit ends the episode, as MiniWoB's timer would), ``success`` = score > 0, ``task``,
``suite``, ``goal``, ``blocked_requests``. Summaries and curves use success (0/1), so every curve
is a success rate per episode (``"measure": "success"`` in both summaries; ``mean_score`` is the
mean raw reward).

The aggregate ``OUT/summary.json``::

    out, suite, measure ("success"), measure_description, params (OUT/run.json), plot
    tasks:          task → arm → {episodes, seeds, average, final, last10 (mean ± std over seeds),
                    best, auc, mean_score, success_rate, cross_task_fraction}, copied from OUT/<task>/summary.json
    tasks_missing:  tasks of run.json that have no episode logs yet
    arms:           arm → {tasks, seeds, episodes, curve_mean, curve_std, average, final, last10,
                    auc, mean_score, success_rate, seconds_per_step_median, cross_task_fraction}

``cross_task_fraction`` of an arm is the mean over its tasks of their mean share of retrieved
neighbours that come from other tasks' episodes (None: nothing was retrieved, e.g. the static arm).

For an arm, with the tasks and seeds it has logs for, E = the fewest episodes any (task, seed)
finished and x[t, s, e] the success of task t, seed s, episode e: y[s, e] = mean over tasks of
x[t, s, e]; curve_mean[e] = mean over seeds of y[:, e] (the success rate per episode averaged over
tasks: the mean learning curve), curve_std[e] = its sample standard deviation over seeds (ddof=1,
as every std here: :func:`jitrl_cli.runs.report.mean_std`); average, final and last10 (the last
min(10, E) episodes) are taken per seed from y, then mean ± std over seeds;
auc is the trapezoid area under curve_mean / (E − 1). Errors are one line (:class:`UserError`,
:class:`adapters.base.AdapterError`, exit code 2).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from adapters.miniwob_env import SEED_STRIDE
from jitrl_cli.core.config import WEB_DEFAULTS, AgentConfig
from jitrl_cli.errors import UserError, require
from jitrl_cli.llm.backend import Backend
from jitrl_cli.runs.evaluation import (
    ARMS, EvalProgress, Run, check_run_file, episodes_path, has_logs, make_runs, read_episodes, reconcile_memory,
    run_eval, run_lists,
)
from jitrl_cli.runs.parallel import run_jobs
from jitrl_cli.runs.report import (
    STD_DESCRIPTION, aggregate_arm, episode_value, load_runs, plot_curves, save_report, summarize, write_report,
)
from jitrl_cli.runs.session import MINIWOB_MAX_STEPS, miniwob_tasks, open_web_session, start_browser
from memories.embedding import get_embedder
from memories.store import MemoryStore

SUITES = ("miniwob",)
MEASURE = "success"
MEASURE_DESCRIPTION = ("success rate: the fraction of episodes that succeed (MiniWoB raw reward > 0, "
                       "the `success` of `jitrl web --json`), per episode, mean over seeds and tasks")


def suite_tasks(game: str | None, suite: str | None, tasks: str | None) -> list[str]:
    """Check the web form's arguments and return the task names.

    Args:
        game: the GAME argument (must be None with --suite).
        suite: ``--suite`` (only ``miniwob``).
        tasks: ``--tasks``, a comma list of MiniWoB task names.

    Returns:
        the task names, in order, repeats dropped.

    Raises:
        UserError: GAME together with --suite/--tasks, no GAME and no --suite, --tasks without
            --suite, --suite without --tasks, an unknown suite or ``webarena``.
        AdapterError: an unknown MiniWoB task (as ``jitrl web --tasks``).
    """

    if game is not None:
        raise UserError(f"give either GAME ({game}) or --suite miniwob --tasks A,B, not both")
    require(suite is not None or tasks is not None, "give a GAME (e.g. zork1) or --suite miniwob --tasks A,B")
    require(suite is not None, "--tasks needs --suite miniwob")
    require(suite != "webarena", "eval supports only --suite miniwob: WebArena needs live sites "
            "(run its tasks with `jitrl web --task-id N`)")
    require(suite in SUITES, f"--suite must be miniwob, got {suite!r}")
    names = miniwob_tasks(tasks.split(",")) if tasks else []
    require(bool(names), "--suite miniwob needs --tasks A,B,C (MiniWoB task names, e.g. click-button,enter-text)")
    return names


def web_settings(given: Collection[str] | None) -> dict[str, Any]:
    """The learning settings a suite uses where the command line gave none: `jitrl web`'s defaults
    (see :data:`jitrl_cli.core.config.WEB_DEFAULTS`) instead of the game commands', and no exact match, phased
    exploration, Go-Explore's return or back-off states (web pages have no world-state hash).

    ``given``: the names (parameter names) of the options given on the command line; None: every option was given.
    """
    out = AgentConfig.typed(**{name: value for name, value in WEB_DEFAULTS.items() if not _given(given, name)})
    for flag in ("exact_match", "replay_best", "go_explore", "backoff_states", "avoid_deaths", "avoid_deaths_own"):
        if not _given(given, flag):
            out[flag] = False
    return out


def _given(given: Collection[str] | None, name: str) -> bool:
    return given is None or name in given


def suite_params(suite: str, tasks: list[str], config: Any, episodes: int, arms: list[str], seeds: int,
                 backend: Backend, task_memory: bool = False) -> dict[str, Any]:
    """The suite's ``run.json``: the settings a resumed run must repeat.

    Every field of the jitrl arm's :class:`~jitrl_cli.core.agent.AgentConfig` is included (enums by
    value), except ``learn`` (set per arm) and ``death_penalty`` (MiniWoB episodes are never lost);
    ``seed`` is the first seed; ``memory`` is ``suite`` (one memory per run for all tasks) or ``task``;
    ``page_seed_stride``: page seeds between consecutive seeds (:data:`adapters.miniwob_env.SEED_STRIDE`; runs
    from before it was recorded used 1, so their seed 1 replayed seed 0's problems shifted by one episode).
    """
    agent = {k: v.value if isinstance(v, Enum) else v for k, v in dataclasses.asdict(config).items()
             if k not in ("learn", "death_penalty")}
    return {"suite": suite, "tasks": tasks, "episodes": episodes, "arms": arms, "seeds": seeds,
            **backend.params(), "measure": MEASURE, "memory": "task" if task_memory else "suite",
            "page_seed_stride": SEED_STRIDE, **agent}


def task_params(params: dict[str, Any], task: str) -> dict[str, Any]:
    """A task directory's ``run.json``: the suite's settings with ``task`` instead of ``tasks``.

    Keeping the task list out lets a suite grow (``--force``) without invalidating finished tasks.
    """
    return {k: v for k, v in params.items() if k != "tasks"} | {"task": task}


def eval_suite(*, game: str | None, suite: str | None, tasks: str | None, config: AgentConfig, out: Path, episodes: int,
               arms: list[str], seeds: int, backend: Backend, force: bool, task_memory: bool = False, workers: int = 1,
               given: Collection[str] | None = None, progress: EvalProgress | None = None) -> dict[str, Any]:
    """Run (or resume) the suite eval into ``out`` and write every report; return the aggregate.

    Args:
        game, suite, tasks: the raw arguments (checked by :func:`suite_tasks`).
        config: the jitrl arm's validated AgentConfig from ``jitrl eval``'s options; its
            ``max_steps`` is replaced by 10 unless --max-steps was given, ``death_penalty`` by 0.
        out: the suite directory (layout in the module docstring).
        episodes, seeds: per task, arm and seed; seeds are ``config.seed``, ``config.seed + 1``, ….
        arms: arm names from :func:`jitrl_cli.runs.evaluation.parse_arms`.
        backend: the model (:class:`jitrl_cli.llm.backend.Backend`).
        force: continue in ``out`` (and its task directories) even if they hold other settings.
        task_memory: a fresh memory per task and run (no transfer between tasks) instead of one per run.
        workers: processes playing the runs (arm × seed) at once, each with its own browser and model; more
            workers than runs split each run's tasks (:func:`shard_jobs`).
        given: the parameter names of the options given on ``jitrl eval``'s command line, to tell a
            given option from its default (None: every option counts as given, ``config`` is used as it is).
        progress: told of every episode (see :class:`jitrl_cli.runs.evaluation.EvalProgress`).

    Returns:
        the aggregate summary (see the module docstring).

    Raises:
        UserError / AdapterError: bad arguments, a run with other settings in ``out``, no
            browser, a bad model (all before any episode is played).
    """
    names = suite_tasks(game, suite, tasks)
    require(config.step_rewards == "env", "--step-rewards llm|both judges text-adventure steps; web suites use env")
    require(config.returns == "mc", "--returns backup needs world-state hashes, which web pages do not have; web suites use mc")
    config = dataclasses.replace(config, death_penalty=0.0,
                                 max_steps=config.max_steps if _given(given, "max_steps") else MINIWOB_MAX_STEPS)
    config = dataclasses.replace(config, **web_settings(given))
    params = suite_params(suite, names, config, episodes, arms, seeds, backend, task_memory)
    check_run_file(out, params, force)
    for name in names:
        check_run_file(out / name, task_params(params, name), force)
    runs = make_runs(arms, config.seed, seeds)
    missing = {run: tuple(n for n in names if len(read_episodes(episodes_path(out / n, run))) < episodes) for run in runs}
    jobs = [WebJob(run, pending, episodes, config, backend, not task_memory) for run, pending in missing.items() if pending]
    if jobs:
        if not task_memory:
            _reconcile_suite_memories(out, names, [job.run for job in jobs])
        if progress is not None:
            progress.start(f"eval {suite}", len(names) * len(runs) * episodes)
            progress.advance(sum(len(names) - len(pending) for pending in missing.values()) * episodes)
        jobs = shard_jobs(jobs, workers)
        if workers > 1 and len(jobs) > 1:
            run_jobs(play_web_job, jobs, out, min(workers, len(jobs)), progress)
        else:
            for job in jobs:
                play_web_job(job, out, progress)
        if progress is not None:
            progress.finish()
    return write_suite_report(out)


@dataclass(frozen=True)
class WebJob:
    """One run (arm × seed) of a web suite: the tasks still missing episodes, in suite order (picklable)."""

    run: Run
    tasks: tuple[str, ...]
    episodes: int
    config: AgentConfig  # the jitrl arm's; run_eval applies the arm's overrides and the seed
    backend: Backend
    suite_memory: bool  # one memory for every task (OUT/memory/<run>), else OUT/<task>/memory/<run>


def shard_jobs(jobs: list[WebJob], workers: int) -> list[WebJob]:
    """Split each run's job into ``workers // len(jobs)`` jobs (at least 1, at most one per task) so that spare
    workers have work: task i of a job's pending tasks goes to shard i mod n, which spreads the slow tasks
    (MiniWoB's alphabetical order puts book-flight beside book-flight-nodelay). Shards keep the job's run,
    and so its memory directory and log files; their task sets are disjoint.

    Returns:
        ``jobs`` itself when ``workers <= len(jobs)``; else the shards, every job's first.
    """
    per = workers // len(jobs) if jobs else 1
    if per <= 1:
        return jobs
    shards = []
    for job in jobs:
        n = min(per, len(job.tasks))
        shards.extend(dataclasses.replace(job, tasks=job.tasks[i::n]) for i in range(n))
    return shards


def play_web_job(job: WebJob, out: Path, progress: EvalProgress | None = None) -> None:
    """Play the missing episodes of ``job`` into the suite directory ``out``: its tasks one after another, in one
    browser with one model; episode e of seed s plays problem instance s · 100 000 + e − 1 (the module docstring)."""
    session = open_web_session(job.backend, start_browser(None))  # browser first: fails fast; $JITRL_CHROMIUM
    embedder = get_embedder()
    try:
        for name in job.tasks:
            target = session.miniwob_target(name, job.config.max_steps, seed=job.config.seed)
            try:
                run_eval(out=out / name, runs=[job.run], episodes=job.episodes, target=target, header=session.header,
                         make_agent=lambda cfg, store: session.agent(embedder, store, cfg), base_config=job.config,
                         embedder=embedder, progress=progress, task=name,
                         before_episode=lambda run, e, env=target.env: env.select_instance(run.seed, e - 1),
                         memory_root=out / "memory" if job.suite_memory else None)
            finally:
                target.close()
    finally:
        session.close()


def _reconcile_suite_memories(out: Path, names: list[str], runs: list[Run]) -> None:
    """Delete from each learning run's suite memory the episodes no task's log has (killed between the writes)."""
    embedder = get_embedder()
    for run in runs:
        if ARMS[run.arm].get("learn", True) and (out / "memory" / run.name).exists():
            logged = [e for n in names for e in read_episodes(episodes_path(out / n, run), repair=True)]
            store = MemoryStore(out / "memory" / run.name, embedder)
            try:
                reconcile_memory(store, logged)
            finally:
                store.close()


def is_suite_dir(out: Path) -> bool:
    """Whether ``out`` was written by ``jitrl eval --suite`` (its run.json lists ``tasks``)."""
    return run_lists(out, "tasks")



def summarize_suite(out: Path, task_summaries: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The aggregate summary of a suite directory (fields in the module docstring); writes nothing.

    Args:
        task_summaries: task → its summary (from :func:`jitrl_cli.runs.report.summarize`), for the
            tasks that have logs; computed here when not given.

    Raises:
        UserError: ``out`` is not a suite directory, or no task has episode logs yet.
    """
    require(is_suite_dir(out), f"{out} is not a suite eval directory (no run.json with tasks)")
    params = json.loads((out / "run.json").read_text())
    names = list(params["tasks"])
    if task_summaries is None:
        task_summaries = {n: summarize(out / n, MEASURE) for n in names if has_logs(out / n)}
    if not task_summaries:
        raise UserError(f"no episode logs in {out}/<task>/episodes; run `jitrl eval --suite ... --out {out}` first")
    logs = {n: load_runs(out / n) for n in task_summaries}  # task → arm → seed → rows
    found = [a for n in logs for a in logs[n]]
    arm_names = list(dict.fromkeys([a for a in params.get("arms", []) if a in found] + found))
    keys = ("episodes", "seeds", "average", "final", "last10", "best", "auc", "mean_score", "success_rate",
            "cross_task_fraction")
    summary: dict[str, Any] = {
        "out": str(out), "suite": params.get("suite"), "measure": MEASURE, "measure_description": MEASURE_DESCRIPTION,
        "std": STD_DESCRIPTION, "params": params,
        "tasks": {n: {a: {k: s[k] for k in keys} for a, s in task_summaries[n]["arms"].items()} for n in task_summaries},
        "tasks_missing": [n for n in names if n not in task_summaries],
        "arms": {},
    }
    for arm in arm_names:
        agg = aggregate_arm({n: logs[n][arm] for n in logs if arm in logs[n]}, lambda _task, row: episode_value(row, MEASURE))
        if agg is None:
            continue
        shares = [s[arm].get("cross_task_fraction") for s in summary["tasks"].values() if arm in s]
        shares = [x for x in shares if x is not None]
        summary["arms"][arm] = {"tasks": agg["groups"], "seeds": agg["seeds"], "episodes": agg["episodes"],
                                **{k: agg[k] for k in ("curve_mean", "curve_std", "average", "final", "last10", "auc",
                                                       "mean_score", "success_rate", "seconds_per_step_median")},
                                "cross_task_fraction": statistics.fmean(shares) if shares else None}
    return summary


def plot_suite(summary: dict[str, Any], path: Path) -> Path:
    """Write the aggregate ``curve.png``: per arm, the success rate per episode averaged over tasks (± std over seeds)."""
    title = (f"jitrl eval {summary['suite']}: success rate per episode, mean over {len(summary['tasks'])} tasks"
             " (± sample std over seeds)")
    arms = summary["arms"]
    unit = f"{len(next(iter(arms.values()))['tasks'])} tasks × " if arms else ""
    return plot_curves(arms, path, title=title, ylabel="success rate", unit=unit, success=True)


def write_suite_report(out: Path) -> dict[str, Any]:
    """Re-render every task that has logs (its summary.json and curve.png) and the aggregate; return the aggregate.

    Raises:
        UserError: see :func:`summarize_suite`.
    """
    require(is_suite_dir(out), f"{out} is not a suite eval directory (no run.json with tasks)")
    names = json.loads((out / "run.json").read_text())["tasks"]
    summaries = {n: write_report(out / n) for n in names if has_logs(out / n)}
    return save_report(summarize_suite(out, summaries), out, plot_suite)
