"""Episodes in parallel: `jitrl eval --workers N` / `--ray ADDRESS` and `jitrl play --workers N`.

An eval *job* is one run (arm × seed) of one game. It plays the run's missing episodes with its own session
(model or server client, and environment) and its own memory, as the sequential eval does, so its log is the
sequential one (each episode starts from a prompt cache holding its header alone: :meth:`jitrl_cli.core.agent.Agent.run_episode`).

* Worker processes (``concurrent.futures.ProcessPoolExecutor``, spawned): each job writes its own log and
  memory in the eval directory, files no other job touches; its episodes reach the driver's progress through
  a ``multiprocessing`` manager queue. Without ``$JITRL_THREADS``, llama.cpp's threads are split between
  the workers.
* Ray (``pip install 'jitrl[ray]'``): each job is a streaming Ray task that plays in a node-local copy of its
  run (log and memory, from the driver's copy when resuming) and yields every finished episode: its log line
  and its memory directory as a tar archive. The driver alone writes the eval directory (memory first, then
  the log line, as the sequential eval does), so resuming works as without Ray.

A web suite's job (:class:`jitrl_cli.runs.web_eval.WebJob`) is one run over all of the suite's tasks; it runs
through the same :func:`run_jobs`.

`jitrl play --workers N`: N processes play the episodes 1..n round-robin (worker i plays i, i + N, …) on one
shared memory; each retrieves from what is stored when it takes each step and writes its episode when the
episode ends (asynchronous JitRL; the store is safe for concurrent writers and readers catch up).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import multiprocessing
import multiprocessing.managers
import os
import queue as queue_module
import shutil
import signal
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.base import AdapterError
from jitrl_cli.core.agent import EpisodeResult
from jitrl_cli.core.config import AgentConfig
from jitrl_cli.errors import UserError
from jitrl_cli.llm.backend import Backend
from jitrl_cli.runs.evaluation import EvalProgress, Run, episodes_path, hold_runs, read_episodes, run_eval
from jitrl_cli.runs.runner import run_episodes
from jitrl_cli.runs.session import open_game_session
from memories.embedding import get_embedder
from memories.store import MemoryStore


@dataclass(frozen=True)
class GameJob:
    """One run of a game eval: what a worker needs to play its missing episodes (picklable)."""

    rom: Path
    run: Run
    episodes: int
    config: AgentConfig  # the jitrl arm's; run_eval applies the arm's overrides and the seed
    backend: Backend
    valid_actions_timeout: float
    state_hash: str


def iter_game_job(job: GameJob, out: Path, progress: EvalProgress | None = None,
                  one_by_one: bool = False) -> Iterator[int]:
    """Play the missing episodes of ``job`` into the eval directory ``out`` (its log and memory only).

    Yields the number of each episode once it is logged (``one_by_one``: then each episode is one call of
    :func:`jitrl_cli.runs.evaluation.run_eval`, so the caller acts between episodes; else one call plays all).
    """
    session = open_game_session(job.rom, job.backend, job.config.max_steps, job.valid_actions_timeout, job.state_hash)
    embedder = get_embedder()
    try:
        start = len(read_episodes(episodes_path(out, job.run)))
        for upto in range(start + 1, job.episodes + 1) if one_by_one else [job.episodes]:
            run_eval(out=out, runs=[job.run], episodes=upto, target=session.target(), header=session.header,
                     make_agent=lambda cfg, store: session.agent(embedder, store, cfg), base_config=job.config,
                     embedder=embedder, progress=progress)
            yield upto
    finally:
        session.close()


def play_game_job(job: GameJob, out: Path, progress: EvalProgress | None = None) -> None:
    """Play every missing episode of ``job`` into ``out`` (:func:`iter_game_job`)."""
    for _ in iter_game_job(job, out, progress):
        pass


def split_threads(workers: int) -> int:
    """llama.cpp threads per worker: ``$JITRL_THREADS`` if set, else the cores shared out (at least 1)."""
    return int(os.environ.get("JITRL_THREADS") or 0) or max(1, (os.cpu_count() or 1) // max(1, workers))


#: prctl(2)'s option: the signal the kernel sends a process when its parent dies
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """End this process when its parent ``parent`` (a pid) dies, however it dies (Linux only; elsewhere nothing).

    prctl(2) ``PR_SET_PDEATHSIG`` has the kernel send SIGTERM then; a parent already gone ends this process
    now. Killing ``jitrl eval --workers`` or ``jitrl play --workers`` thus ends its workers too, instead of
    leaving them playing into the eval directory (where a resumed eval would meet their run locks).
    """
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


def _init_worker(threads: int, parent: int) -> None:
    die_with_parent(parent)
    os.environ["JITRL_THREADS"] = str(threads)


@contextlib.contextmanager
def _worker_pool(workers: int) -> Iterator[tuple[Any, ProcessPoolExecutor]]:
    """(an event queue, a pool of ``workers`` spawned processes), both ending with this process
    (:func:`die_with_parent`); each worker gets its share of llama.cpp threads (:func:`split_threads`)."""
    context = multiprocessing.get_context("spawn")
    manager = multiprocessing.managers.SyncManager(ctx=context)
    manager.start(die_with_parent, (os.getpid(),))
    with manager, ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                      initargs=(split_threads(workers), os.getpid())) as pool:
        yield manager.Queue(), pool


class _QueueProgress:
    """An :class:`EvalProgress` inside a worker: forwards what the driver shows through a queue."""

    def __init__(self, events: Any) -> None:
        self.events = events

    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, count: int) -> None:
        self.events.put(("advance", count))

    def episode(self, task: str | None, run: Run, number: int, result: EpisodeResult) -> None:
        self.events.put(("episode", task, run, number, result))

    def finish(self) -> None:
        pass


def _forward(events: Any, progress: EvalProgress | None, started: set[int] | None = None) -> None:
    """Pass the workers' queued events to ``progress``; ("start", i) events add job i to ``started``."""
    while True:
        try:
            event = events.get_nowait()
        except queue_module.Empty:
            return
        if event[0] == "start":
            if started is not None:
                started.add(event[1])
            continue
        if progress is None:
            continue
        if event[0] == "advance":
            progress.advance(event[1])
        else:
            progress.episode(*event[1:])


def _wait_all(futures: list[Future], poll: Callable[[], None], stop_on_error: bool = True) -> None:
    """Wait for every future, calling ``poll`` often.

    ``stop_on_error``: a future's failure cancels the futures not started and is raised; else the failures stay in
    their futures (``future.exception()``) and the others go on. An error of this process (KeyboardInterrupt)
    cancels the futures not started and is raised either way.
    """
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            poll()
            for future in done if stop_on_error else ():
                future.result()
    except BaseException:
        for future in pending:
            future.cancel()
        raise
    finally:
        poll()


def run_jobs(play: Callable[[Any, Path, EvalProgress | None], None], jobs: list[Any], out: Path, workers: int,
             progress: EvalProgress | None = None) -> None:
    """Call ``play(job, out, progress)`` for every job in ``workers`` spawned processes (each job writing its
    own files in ``out``); the jobs' progress events reach ``progress`` in this process.

    Args:
        play: a module-level function (it is pickled by name), e.g. :func:`play_game_job`.
        jobs: picklable jobs, e.g. :class:`GameJob`.

    Raises:
        the first job's error (UserError, AdapterError, ServerError: one line), after the running jobs end.
    """
    with _worker_pool(workers) as (events, pool):
        futures = [pool.submit(play, job, out, _QueueProgress(events)) for job in jobs]
        _wait_all(futures, lambda: _forward(events, progress))


def run_game_jobs(jobs: list[GameJob], out: Path, workers: int, progress: EvalProgress | None = None) -> None:
    """Play the game eval's ``jobs`` in ``workers`` spawned processes (:func:`run_jobs`)."""
    run_jobs(play_game_job, jobs, out, workers, progress)


def _play_game_job_at(index: int, job: GameJob, out: Path, events: Any) -> None:
    """:func:`play_game_job` in a worker, after telling the driver that job ``index`` has started."""
    events.put(("start", index))
    play_game_job(job, out, _QueueProgress(events))


class WorkerDied(RuntimeError):
    """A worker process died (killed, out of memory, crashed) while it played this job."""


def run_game_jobs_apart(jobs: list[tuple[GameJob, Path]], workers: int,
                        progress: EvalProgress | None = None) -> list[BaseException | None]:
    """Play jobs of several games' evals, each ``(job, its game's eval directory)``, in one pool of ``workers``
    spawned processes: a worker that ends its job takes the next one at once, whatever its game, so no core waits
    for a game's slowest run (``jitrl eval --games --workers N``). The jobs start in the order given.

    Unlike :func:`run_jobs`, a job's failure does not stop the others. A worker that dies breaks the pool
    (``concurrent.futures`` fails every unfinished job then): the jobs that had started fail with
    :class:`WorkerDied` (which of them was the dying worker's is not known), and the ones that had not are played
    in a new pool.

    Returns:
        per job, in order: the exception it raised, or None when it logged all its episodes.

    Raises:
        KeyboardInterrupt (or any error of this process): the jobs not started are cancelled, the running ones end
        with the pool's workers.
    """
    errors: list[BaseException | None] = [None] * len(jobs)
    todo = list(range(len(jobs)))
    while todo:
        started: set[int] = set()
        with _worker_pool(max(1, min(workers, len(todo)))) as (events, pool):
            futures = {i: pool.submit(_play_game_job_at, i, *jobs[i], events) for i in todo}
            _wait_all(list(futures.values()), lambda: _forward(events, progress, started), stop_on_error=False)
        for i, future in futures.items():
            errors[i] = future.exception()
        broken = [i for i in todo if isinstance(errors[i], BrokenProcessPool)]
        if not started.intersection(broken):  # the pool broke before any of them started: no round would get further
            started.update(broken)
        for i in started.intersection(broken):
            errors[i] = WorkerDied("a worker process died while playing this run (killed, out of memory or crashed); "
                                   "run the eval again to resume it")
        todo = [i for i in broken if i not in started]
    return errors


# -- Ray -------------------------------------------------------------------------------------------------------
def _tar(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(directory, arcname=".")
    return buffer.getvalue()


def _untar(data: bytes, directory: Path) -> None:
    """Replace ``directory`` by the archive's content (extracted beside it, then swapped in)."""
    tmp = directory.with_name(f".{directory.name}.incoming")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(tmp, filter="data")
    old = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def ray_game_job(job: GameJob, logged: list[dict[str, Any]],
                 memory: bytes | None) -> Iterator[tuple[dict[str, Any], EpisodeResult | None, bytes | None]]:
    """The body of a Ray job (a generator): play ``job`` in a temporary eval directory seeded with the driver's
    ``logged`` episodes and ``memory`` archive; yield (log line, result, memory archive or None) per episode."""
    with tempfile.TemporaryDirectory(prefix="jitrl-ray-") as tmp:
        out = Path(tmp)
        log = episodes_path(out, job.run)
        log.parent.mkdir(parents=True)
        log.write_text("".join(json.dumps(r) + "\n" for r in logged))
        mem = out / "memory" / job.run.name
        if memory is not None:
            _untar(memory, mem)
        results: list[EpisodeResult] = []
        progress = _ListProgress(results)
        for _ in iter_game_job(job, out, progress, one_by_one=True):
            yield read_episodes(log)[-1], results[-1] if results else None, _tar(mem) if mem.exists() else None


class _ListProgress(_QueueProgress):
    """Keeps the results of the episodes played (the Ray job yields them)."""

    def __init__(self, results: list[EpisodeResult]) -> None:
        super().__init__(None)
        self.results = results

    def advance(self, count: int) -> None:
        pass

    def episode(self, task: str | None, run: Run, number: int, result: EpisodeResult) -> None:
        self.results.append(result)


def run_game_jobs_on_ray(jobs: list[GameJob], out: Path, address: str, progress: EvalProgress | None = None) -> None:
    """Play ``jobs`` as Ray tasks on the cluster at ``address`` (``local``: start one here); the driver writes ``out``.

    The driver holds every job's run lock (:func:`jitrl_cli.runs.evaluation.hold_runs`) while it writes, as the sequential eval and the
    workers do, so a second eval on a run being played is refused before anything is read or written.

    Raises:
        UserError: if Ray is not installed, the cluster cannot be reached, or another process is playing one
            of the runs; a job's own error otherwise.
    """
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: pip install 'jitrl[ray]'") from None
    with hold_runs(out, [job.run for job in jobs]):
        _drive_on_ray(ray, jobs, out, address, progress)


def _drive_on_ray(ray: Any, jobs: list[GameJob], out: Path, address: str, progress: EvalProgress | None) -> None:
    """The body of :func:`run_game_jobs_on_ray`, with the run locks held."""
    try:
        ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True, configure_logging=False,
                 **({"num_cpus": os.cpu_count() or 1, "object_store_memory": 200 * 2**20} if address == "local" else {}))
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"--ray {address}: cannot reach the Ray cluster ({' '.join(str(exc).split())[:160]})") from None
    remote = ray.remote(num_cpus=1, num_returns="streaming")(ray_game_job)
    lock = threading.Lock()

    def drive(job: GameJob) -> None:
        log, mem = episodes_path(out, job.run), out / "memory" / job.run.name
        log.parent.mkdir(parents=True, exist_ok=True)
        logged = read_episodes(log, repair=True)
        with lock:
            if progress is not None and logged:
                progress.advance(len(logged))
        snapshot = _tar(mem) if mem.exists() else None
        env = {"env_vars": {"JITRL_THREADS": str(split_threads(len(jobs)))}}
        for ref in remote.options(runtime_env=env).remote(job, logged, snapshot):
            record, result, archive = ray.get(ref)
            if archive is not None:
                _untar(archive, mem)  # memory first, then the log line (as the sequential eval writes them)
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            with lock:
                if progress is not None and result is not None:
                    progress.episode(None, job.run, int(record["episode"]), result)

    try:
        with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
            _wait_all([pool.submit(drive, job) for job in jobs], lambda: None)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        if isinstance(cause, (UserError, AdapterError)):  # the job's own one-line error, as without Ray
            raise cause from None
        detail = " ".join(str(exc.cause).split())[:300]  # the job's exception itself, not Ray's traceback around it
        raise UserError(f"a Ray job failed: {type(exc.cause).__name__}: {detail}") from None
    finally:
        ray.shutdown()


# -- jitrl play --workers --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlayJob:
    """One `jitrl play --workers` worker: the episodes it plays, on the shared memory (None: --no-learn)."""

    worker: int
    numbers: tuple[int, ...]
    rom: Path
    backend: Backend
    config: AgentConfig
    memory: Path | None
    valid_actions_timeout: float
    state_hash: str


def play_worker(job: PlayJob, events: Any) -> None:
    """Play ``job.numbers``, putting ("step", worker, number, t) and ("episode", worker, record, result) on ``events``."""
    session = open_game_session(job.rom, job.backend, job.config.max_steps, job.valid_actions_timeout, job.state_hash)
    embedder = get_embedder()
    store = MemoryStore(job.memory, embedder) if job.memory is not None else None
    number = {"now": 0}

    class _Steps:  # an Observer: each step's number goes to the driver's view
        def on_step(self, log: Any) -> None:
            events.put(("step", job.worker, number["now"], log.step + 1))

        def on_episode_end(self, result: EpisodeResult, logs: list[Any]) -> None:
            pass

    try:
        agent = session.agent(embedder, store, job.config)
        for n in job.numbers:
            number["now"] = n
            for episode in run_episodes(agent, session.target(), session.header, [n], _Steps()):
                events.put(("episode", job.worker, episode.record, episode.result))
    finally:
        session.close()
        if store is not None:
            store.close()


def run_play_workers(jobs: list[PlayJob], on_event: Callable[[tuple], None]) -> None:
    """Run the play workers in spawned processes, passing each of their events to ``on_event`` (in this thread).

    Raises:
        the first worker's error, after the others stop.
    """
    def pump(events: Any) -> None:
        while True:
            try:
                on_event(events.get_nowait())
            except queue_module.Empty:
                return

    with _worker_pool(len(jobs)) as (events, pool):
        _wait_all([pool.submit(play_worker, job, events) for job in jobs], lambda: pump(events))
