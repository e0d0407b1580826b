"""Jericho's valid-action finder in a child process, with a timeout.

``FrotzEnv.get_valid_actions`` can hang on some states (jericho issue 53); a hung
call inside our own process could never be interrupted. The finder therefore runs
in a dedicated child process holding its own emulator: the parent sends the
emulator state, the child restores it and answers with the valid actions. A call
that takes longer than the timeout kills the child (a fresh one is started on the
next call) and returns ``None``.

The child runs with a fixed string-hash seed (``PYTHONHASHSEED=0``). Jericho collects the interactive objects'
names in a ``set`` and keeps, of the candidate actions that change the world alike, the first in that set's
order (``FrotzEnv.get_valid_actions``: ``max(group, key=verb_usage_count)`` returns the first of a tie). With
Python's per-process hash randomisation the same state therefore gave "look around sword" in one run and
"look around brass" in another (zork2's first room), so two runs of one seed drifted apart from the first step
on and a lever that never acted still changed the run. With the seed fixed, a seed replays exactly.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import threading
from typing import Any

#: The child's string-hash seed: any fixed value makes Jericho's answer the same in every run (module docstring).
HASH_SEED = "0"
_ENV_LOCK = threading.Lock()  # the child inherits os.environ as it is when it starts; one start at a time sets it


def _serve(conn: multiprocessing.connection.Connection, rom_path: str, seed: int | None) -> None:
    """Child process main loop: state in, list of valid actions (or an error string) out."""
    import warnings

    warnings.simplefilter("ignore")
    import jericho

    from adapters.spacy_pipeline import install_for_jericho

    try:
        install_for_jericho()
        env = jericho.FrotzEnv(rom_path, seed=seed)
        env.reset()
        conn.send(("ready", None))
    except Exception as exc:  # reported to the parent as a one-line error
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            state = conn.recv()
        except EOFError:
            return
        if state is None:
            return
        try:
            env.set_state(state)
            actions = env.get_valid_actions(use_object_tree=True, use_ctypes=True, use_parallel=False)
            conn.send(("ok", actions))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class ValidActionFinder:
    """Computes Jericho valid actions for emulator states in a killable child process.

    Args:
        rom_path: the story file.
        seed: the emulator seed (must match the parent's emulator).
        timeout: seconds allowed per call before the child is killed.
    """

    def __init__(self, rom_path: str, seed: int | None, timeout: float = 10.0) -> None:
        self.rom_path = rom_path
        self.seed = seed
        self.timeout = timeout
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._conn: multiprocessing.connection.Connection | None = None
        self.timeouts = 0
        self.calls = 0

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_serve, args=(child, self.rom_path, self.seed), daemon=True)
        with _ENV_LOCK:
            before = os.environ.get("PYTHONHASHSEED")
            os.environ["PYTHONHASHSEED"] = HASH_SEED
            try:
                proc.start()
            finally:
                if before is None:
                    del os.environ["PYTHONHASHSEED"]
                else:
                    os.environ["PYTHONHASHSEED"] = before
        child.close()
        # Start-up (imports, spaCy) gets a generous allowance of its own.
        if not parent.poll(max(60.0, self.timeout)):
            proc.kill()
            raise RuntimeError("valid-action finder did not start")
        status, payload = parent.recv()
        if status != "ready":
            proc.kill()
            raise RuntimeError(f"valid-action finder failed to start: {payload}")
        self._proc, self._conn = proc, parent

    def __call__(self, state: Any) -> list[str] | None:
        """Valid actions at ``state`` (from ``FrotzEnv.get_state()``), or None on timeout/failure."""
        self.calls += 1
        if self._proc is None or not self._proc.is_alive():
            self._start()
        assert self._conn is not None
        try:
            self._conn.send(state)
            if self._conn.poll(self.timeout):
                status, payload = self._conn.recv()
                return list(payload) if status == "ok" else None
        except (EOFError, OSError, BrokenPipeError):
            pass
        self.timeouts += 1
        self._kill()
        return None

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._proc, self._conn = None, None

    def close(self) -> None:
        """Stop the child process."""
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(timeout=2)
            except (OSError, BrokenPipeError):
                pass
        self._kill()
