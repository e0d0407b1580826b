"""`jitrl eval GAME`: play a game eval's missing episodes, one process, worker processes or Ray tasks.

The eval directory and its resumption are :mod:`jitrl_cli.runs.evaluation`'s; the parallel ways to fill it
are :mod:`jitrl_cli.runs.parallel`'s.
"""

from __future__ import annotations

from pathlib import Path

from jitrl_cli.core.config import AgentConfig
from jitrl_cli.llm.backend import Backend
from jitrl_cli.runs.evaluation import EvalProgress, Run, run_eval
from jitrl_cli.runs.parallel import GameJob, run_game_jobs, run_game_jobs_on_ray
from jitrl_cli.runs.session import open_game_session
from memories.embedding import get_embedder


def eval_game(*, rom: Path, out: Path, runs: list[Run], episodes: int, config: AgentConfig, backend: Backend,
              valid_actions_timeout: float, state_hash: str, progress: EvalProgress | None = None, workers: int = 1,
              ray: str | None = None) -> None:
    """Play the missing episodes of a game eval in ``out`` (its ``run.json`` already checked), then close everything.

    ``config`` is the jitrl arm's (its ``max_steps`` opens the game); ``state_hash`` is the game's world-state key.
    ``workers`` > 1: the runs are jobs in that many processes; ``ray``: Ray tasks on the cluster at that address
    (:mod:`jitrl_cli.runs.parallel`). The logs are the same either way.
    """
    if progress is not None:
        progress.start(f"eval {rom.stem}", len(runs) * episodes)
    if workers > 1 or ray:
        jobs = [GameJob(rom, run, episodes, config, backend, valid_actions_timeout, state_hash) for run in runs]
        if ray:
            run_game_jobs_on_ray(jobs, out, ray, progress)
        else:
            run_game_jobs(jobs, out, workers, progress)
    else:
        session = open_game_session(rom, backend, config.max_steps, valid_actions_timeout, state_hash)
        embedder = get_embedder()
        try:
            run_eval(out=out, runs=runs, episodes=episodes, target=session.target(), header=session.header,
                     make_agent=lambda cfg, store: session.agent(embedder, store, cfg), base_config=config,
                     embedder=embedder, progress=progress)
        finally:
            session.close()
    if progress is not None:
        progress.finish()
