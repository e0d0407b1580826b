"""`jitrl eval`: run arms × seeds × episodes on fresh memories, resumably, and log every episode.

Layout of an eval directory::

    run.json                       the run's parameters (a resumed run must match them)
    episodes/<arm>-seed<s>.jsonl   one EpisodeResult object per finished episode (or .jsonl.gz once finished)
    episodes/<arm>-seed<s>.lock    held (filelock) by the one process playing that run's episodes
    memory/<arm>-seed<s>/          the arm's own memory (fresh at episode 1)
    summary.json, curve.png        written by :mod:`jitrl_cli.runs.report`

Resuming: an episode counts as done once its JSONL line is complete. A memory
episode without a log line (the run was killed between the two writes) is
deleted, so that memory and log always describe the same episodes.

One writer per run: :func:`run_eval` holds each run's lock while it plays, so a second eval started on the
same directory (or a resumed one while workers of a killed eval still play) stops with a one-line error
instead of interleaving its episodes with the other's in one log and one memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock, Timeout

from jitrl_cli.core.agent import Agent, EpisodeResult
from jitrl_cli.core.config import AgentConfig
from jitrl_cli.errors import UserError
from jitrl_cli.runs.runner import Target, play_episode
from memories.embedding import Embedder
from memories.store import MemoryStore

ARMS = {
    "jitrl": {},  # the default update
    "static": {"learn": False},  # the same model with β = 0 and no memory
}


def parse_arms(text: str) -> list[str]:
    """``"jitrl,static"`` → ``["jitrl", "static"]``.

    Raises:
        UserError: for an unknown or repeated arm.
    """
    arms = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if not arms or unknown:
        raise UserError(f"--arms must be a comma list of {', '.join(ARMS)}; got {text!r}")
    if len(set(arms)) != len(arms):
        raise UserError(f"--arms repeats an arm: {text!r}")
    return arms


@dataclass(frozen=True)
class Run:
    """One arm with one seed inside an eval directory."""

    arm: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.arm}-seed{self.seed}"


def episodes_path(out: Path, run: Run) -> Path:
    """The JSONL log of a run."""
    return out / "episodes" / f"{run.name}.jsonl"


def hold_run(out: Path, run: Run) -> FileLock:
    """Take the run's writer lock ``episodes/<arm>-seed<s>.lock`` (filelock; the OS releases it if the holder dies).

    Returns:
        the held lock (release it, or use it as a context manager).

    Raises:
        UserError: another process holds it (an eval playing this run now).
    """
    lock = FileLock(episodes_path(out, run).with_suffix(".lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"{out} run {run.name} is being played by another jitrl eval; "
                        "wait for it to end (or stop it) and resume, or use another --out") from None
    return lock


@contextlib.contextmanager
def hold_runs(out: Path, runs: Iterable[Run]) -> Iterator[None]:
    """Hold every run's writer lock (:func:`hold_run`; ``out/episodes`` is created first) for the ``with`` block,
    taken before anything is read or written.

    Raises:
        UserError: another process is playing one of ``runs`` in ``out``; the locks taken are released.
    """
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        for run in runs:
            held.enter_context(hold_run(out, run))
        yield


def read_episodes(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """The complete episode objects of a run's log; with ``repair`` a torn last line is cut off.

    ``path`` is the plain ``.jsonl`` log; when it is absent, its gzip-compressed copy
    ``<path>.gz`` (a finished eval directory may be compressed, e.g. in ``bench/results``)
    is read instead, and with ``repair`` (the log is about to be appended to) first restored
    to the plain file, so that a resumed run keeps one plain log. No log at all: ``[]``.

    Raises:
        UserError: if a complete line is not JSON (the log was edited by hand), or the
            compressed log is not gzip.
    """
    compressed = path.with_name(path.name + ".gz")
    if path.exists():
        data = path.read_bytes()
    elif compressed.exists():
        try:
            data = gzip.decompress(compressed.read_bytes())
        except (OSError, EOFError) as exc:
            raise UserError(f"{compressed} is not a gzip file ({exc}); remove it or choose another --out") from None
        if repair:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            compressed.unlink()
    else:
        return []
    complete = data[: data.rfind(b"\n") + 1]
    if repair and len(complete) != len(data):
        path.write_bytes(complete)
    source = path if path.exists() else compressed
    out = []
    for lineno, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise UserError(f"{source} line {lineno} is not JSON; remove it or choose another --out") from None
    return out



def has_logs(eval_dir: Path) -> bool:
    """Whether ``eval_dir/episodes`` holds a logged episode: plain logs, or a finished run's compressed ones."""
    logs = eval_dir / "episodes"
    return any(read_episodes(logs / p.name.removesuffix(".gz"))
               for p in sorted([*logs.glob("*.jsonl"), *logs.glob("*.jsonl.gz")]))


def run_lists(out: Path, key: str) -> bool:
    """Whether ``out/run.json`` exists and has ``key`` (``tasks``: a suite eval, ``games``: a games eval)."""
    path = out / "run.json"
    try:
        return path.is_file() and key in json.loads(path.read_text())
    except (OSError, ValueError):
        return False


# Settings added after runs were started: a run.json without them ran with this value.
ADDED_SETTINGS = {"prompt_inventory": False, "abstract_actions": False, "replay_best": False, "go_explore": False, "returns": "mc", "avoid_cycles": False, "fill_neighbours": True, "optimistic": False, "unseen_q": "value", "prior": "sequence",
                  "state_hash": "jericho", "history": None, "backoff_actions": False,
                  "backoff_states": False, "avoid_deaths": False, "avoid_deaths_own": False, "avoid_deaths_horizon": 1,
                  "page_seed_stride": 1, "safe_cycles": False, "exact_all": False, "across_worlds": "max", "death_credit": 0, "cautious_after": 0}


def check_out_dir(out: Path) -> None:
    """Check that ``out`` can be an eval directory: a directory, or nothing yet (its parents may be missing).

    Raises:
        UserError: ``out`` (or a parent) is an existing file, or not a directory.
    """
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                raise UserError(f"--out {out}: {path} exists and is not a directory")
            return


def _adds_to(key: str, old: Any, new: Any) -> bool:
    """Whether ``new`` only adds to a stored run's ``old`` value of ``key``: more ``seeds`` (seeds are ``seed``,
    ``seed + 1``, …, so the stored seeds' episodes stay theirs) or more ``games`` (every game directory checks
    its own settings)."""
    if key == "seeds":
        return isinstance(old, int) and isinstance(new, int) and new > old
    if key == "games":
        return isinstance(old, list) and isinstance(new, list) and set(old) < set(new)
    return False


def check_run_file(out: Path, params: dict[str, Any], force: bool) -> None:
    """Write ``run.json``, or check that a resumed run uses the same parameters. A resumed run may ask for more
    ``seeds`` than the stored run, or (``jitrl eval --games``) more games: that adds seeds or games to a finished
    eval (:func:`_adds_to`).

    Raises:
        UserError: if ``out`` holds a run with other parameters (and not ``force``), is not a directory,
            or cannot be created or written.
    """
    check_out_dir(out)
    path = out / "run.json"
    try:
        if path.exists() and not force:
            try:
                old = json.loads(path.read_text())
            except ValueError:
                raise UserError(f"{path} is not JSON; choose another --out or pass --force") from None
            changed = sorted(k for k in set(old) | set(params) if old.get(k, ADDED_SETTINGS.get(k)) != params.get(k, ADDED_SETTINGS.get(k))
                             and not _adds_to(k, old.get(k), params.get(k)))
            if changed:
                raise UserError(
                    f"{out} holds a run with other settings ({', '.join(changed)}); use another --out or pass --force"
                )
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write the eval directory {out}: {exc.strerror or exc}") from None


def reconcile_memory(store: MemoryStore, logged: list[dict[str, Any]]) -> int:
    """Delete memory episodes that have no log line (killed between memory write and log write).

    Returns:
        the number of episodes deleted.
    """
    logged_ids = {e["uuid"] for e in logged}
    extra = [i for i, uuid in store.episode_uuids().items() if uuid not in logged_ids]
    return store.delete_episodes(extra) if extra else 0


class EvalProgress(Protocol):
    """How an eval reports its progress (the command layer draws it: :class:`jitrl_cli.commands.view.EvalProgressView`)."""

    def start(self, label: str, total: int) -> None:
        """Playing begins: ``total`` episodes in all (done or not), under ``label`` (``eval zork1``, ``eval miniwob``)."""

    def advance(self, count: int) -> None:
        """``count`` episodes were already done (a resumed run, or a suite's finished tasks)."""

    def episode(self, task: str | None, run: Run, number: int, result: EpisodeResult) -> None:
        """Episode ``number`` of ``run`` ended (``task``: the suite's task, None for a game)."""

    def finish(self) -> None:
        """Playing is over (every episode played)."""


def make_runs(arms: list[str], seed: int, seeds: int) -> list[Run]:
    """Arms × seeds: every arm with the seeds ``seed``, ``seed + 1``, …, ``seed + seeds − 1``."""
    return [Run(arm, seed + i) for arm in arms for i in range(seeds)]


def run_eval(
    *,
    out: Path,
    runs: list[Run],
    episodes: int,
    target: Target,
    header: str,
    make_agent: Callable[[AgentConfig, MemoryStore | None], Agent],
    base_config: AgentConfig,
    embedder: Embedder,
    progress: EvalProgress | None = None,
    task: str | None = None,
    before_episode: Callable[[Run, int], None] | None = None,
    memory_root: Path | None = None,
) -> None:
    """Play every missing episode, round-robin over runs (episode 1 of every run, then episode 2, …).

    Args:
        out: the eval directory.
        runs: arms × seeds.
        episodes: episodes per run.
        target: the environment (reset at every episode), its memory namespace and the fields its
            episodes add to their logged objects (:class:`jitrl_cli.runs.runner.Target`).
        header: the prompt header.
        make_agent: builds an agent for a config and a memory (None for the static arm).
        base_config: the jitrl arm's configuration; arms override fields of it.
        embedder: the memory's embedder.
        progress: told of the episodes already done (``advance``, once per run) and of each episode played.
        task: the suite's task (passed on to ``progress``); None for a game.
        before_episode: called as ``(run, episode)`` just before episode ``episode`` (1-based) of
            ``run`` is played, e.g. to choose its problem instance so that every arm sees the same
            problems and a resumed run the same ones as an uninterrupted run.
        memory_root: where the runs' memories are (``<memory_root>/<arm>-seed<s>/``); None: ``out/memory``.
            A memory outside ``out`` is shared with other eval directories (a web suite's tasks), so it is
            not reconciled with this directory's logs alone: the caller reconciles it with every log that
            writes into it (:func:`reconcile_memory`).

    Raises:
        UserError: another process is playing one of ``runs`` in ``out`` (:func:`hold_run`); nothing was played.
    """
    agents: dict[Run, Agent] = {}
    done: dict[Run, int] = {}
    # every run's lock before anything is read, written or reconciled; the memories close before the locks go
    with hold_runs(out, runs), contextlib.ExitStack() as opened:
        for run in runs:
            logged = read_episodes(episodes_path(out, run), repair=True)
            config = dataclasses.replace(base_config, seed=run.seed, **ARMS[run.arm])
            store = None
            if config.learn:
                store = opened.enter_context(MemoryStore((memory_root or out / "memory") / run.name, embedder))
                if memory_root is None:
                    reconcile_memory(store, logged)
            agents[run] = make_agent(config, store)
            done[run] = len(logged)
            if progress is not None and logged:
                progress.advance(len(logged))
        for e in range(1, episodes + 1):
            for run in runs:
                if done[run] >= e:
                    continue
                if before_episode is not None:
                    before_episode(run, e)
                episode = play_episode(agents[run], target, e, header)
                record = episode.record | {"arm": run.arm, "seed": run.seed}
                with open(episodes_path(out, run), "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
                done[run] = e
                if progress is not None:
                    progress.episode(task, run, e, episode.result)
