"""MiniWoB++ tasks (HTML files of the ``miniwob`` package) in headless Chromium, no Selenium.

An episode: load ``file://…/miniwob/<task>.html``, seed the page's RNG (``Math.seedrandom``),
make the episode timer effectively infinite (``core.EPISODE_MAX_TIME``, so slow model steps never
time out), start it with ``core.startEpisodeReal()`` and read the goal from ``core.getUtterance()``.
After each action the page's globals say whether the task ended and with which raw reward
(``WOB_DONE_GLOBAL``, ``WOB_RAW_REWARD_GLOBAL``, in [−1, 1]; raw > 0 is a success).

Problem instances: episode i (0-based) of seed s uses page seed ``s · SEED_STRIDE + i`` (or
``s · SEED_STRIDE + i mod instances`` with ``instances`` > 0, to revisit the same problems). Seeds are thus
independent samples of problems: two seeds share no instance within :data:`SEED_STRIDE` episodes (with
``s + i``, seed 1 replayed seed 0's instances shifted by one episode). Seed 0 plays page seeds 0, 1, 2, ….

Memory namespace: the suite, ``miniwob`` (:data:`NAMESPACE`), so experience transfers across
tasks; the state key starts with the task's goal template, which keeps tasks apart in retrieval.

Confinement (:mod:`adapters.browser`): the page may load ``file://`` URLs under the package's
``html`` directory only, and no network at all (its context's egress proxy refuses every
http/ws request); refusals are counted in ``info["blocked_requests"]``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from adapters.base import AdapterError
from adapters.browser import Browser, OriginGuard
from adapters.web_observation import (
    ActionError, ElementIds, action_key, backoff_key, enumerate_candidates, execute, goal_values, parse_action,
    render_observation, short_url, state_key, take_snapshot,
)

NAMESPACE = "miniwob"
EPISODE_MAX_TIME_MS = 24 * 3600 * 1000  # < 2^31 (setTimeout's limit)
#: what MiniWoB gives an episode whose timer runs out (core.js: ``core.endEpisode(-1, false, 'timed out')``).
#: The step limit replaces the page's 10-second timer (a model step takes longer than a person's), so an
#: episode cut off by it gets this raw reward, as the page would give it: running out of steps is a failure,
#: not a better outcome than a wrong answer (0 would teach the agent to stall).
TIMEOUT_REWARD = -1.0
#: page seeds between two consecutive run seeds: seed s plays page seeds s · SEED_STRIDE, s · SEED_STRIDE + 1, …
SEED_STRIDE = 100_000
_META = "() => ({done: WOB_DONE_GLOBAL, raw: WOB_RAW_REWARD_GLOBAL, reason: WOB_REWARD_REASON})"
_HIDE_HUD = "#reward-display, #sync-task-cover, #click-canvas, #query { display: none !important; }"


def html_root() -> Path:
    """The ``miniwob`` package's ``html`` directory (core/, common/, miniwob/)."""
    import miniwob

    return Path(miniwob.__file__).resolve().parent / "html"


def list_tasks() -> list[str]:
    """Names of the MiniWoB++ tasks that run from file:// (the flight.* tasks need http and are left out)."""
    return sorted(p.stem for p in (html_root() / "miniwob").glob("*.html"))


#: Tasks `--tasks all` leaves out, and why (checked by starting every task in headless Chromium: these show
#: nothing actionable in the accessibility tree, their targets are drawn on a canvas or in bare SVG).
EXCLUDED: dict[str, str] = {
    task: "no actionable element in the accessibility tree (drawn on a canvas or in SVG)"
    for task in ("ascending-numbers", "chase-circle", "click-color", "grid-coordinate", "hot-cold", "hover-shape",
                 "moving-items", "social-media", "tic-tac-toe")
}


def supported_tasks() -> list[str]:
    """Every task of :func:`list_tasks` except :data:`EXCLUDED` (what ``--tasks all`` runs)."""
    return [t for t in list_tasks() if t not in EXCLUDED]


def page_seed(seed: int, index: int, instances: int = 0) -> int:
    """The page seed (``Math.seedrandom``'s argument) of episode ``index`` (0-based) of the run with seed ``seed``.

    ``seed · SEED_STRIDE + index``, or ``seed · SEED_STRIDE + index mod instances`` with ``instances`` > 0, so
    seeds draw disjoint problem instances (for runs under :data:`SEED_STRIDE` episodes) and seed 0 plays page
    seeds 0, 1, 2, ….
    """
    return seed * SEED_STRIDE + (index % instances if instances > 0 else index)


def task_path(task: str) -> Path:
    """The HTML file of a task.

    Raises:
        AdapterError: unknown task name.
    """
    path = html_root() / "miniwob" / f"{task}.html"
    if "/" in task or not path.is_file():
        tasks = list_tasks()
        close = [t for t in tasks if task.split("-")[0] in t][:5] or tasks[:5]
        raise AdapterError(f"unknown MiniWoB task {task!r} ({len(tasks)} tasks, e.g. {', '.join(close)})")
    return path


class MiniWoBEnv:
    """One MiniWoB++ task as a Gymnasium-style environment with candidate actions.

    Args:
        task: task name, e.g. ``click-button``.
        browser: a running :class:`Browser` to share (else one is started and owned).
        chromium: executable for an owned browser (``--chromium``).
        max_steps: steps after which ``truncated`` is True; that step's reward (and ``score``) is
            :data:`TIMEOUT_REWARD`, the page's own reward for an episode that runs out of time.
        seed: the run's seed; its episode i plays page seed ``seed · SEED_STRIDE + i``; instances: see the
            module docstring.

    ``info`` keys: those of :data:`adapters.base.INFO_KEYS` (score: the raw reward once done, −1 at the
    step limit, else 0;
    max_score 1.0; location: the short URL; inventory []; state_hash: a digest of the observation;
    victory: raw > 0; game_over False; valid_actions_seconds 0.0, the candidates' time is the step's),
    and goal, url, raw_reward, done, error (last action's, or None), blocked_requests, reason.

    Raises:
        AdapterError: unknown task, no browser, or a page that does not start.
    """

    #: ``info["state_hash"]`` is a digest of the observation, not a world-state key
    state_hash_kind = None
    #: the coarser action key the memory backs off to (``--backoff-actions``)
    backoff_key = staticmethod(backoff_key)

    def __init__(self, task: str, browser: Browser | None = None, chromium: str | None = None,
                 max_steps: int = 10, seed: int = 0, instances: int = 0) -> None:
        self.task = task
        self.name = task
        self.url = task_path(task).as_uri()
        self.max_steps = max_steps
        self.seed = seed
        self.instances = instances
        self._own = browser is None
        self.browser = browser or Browser(chromium)
        self.guard = OriginGuard(file_dirs=[html_root()])
        self.context = self.browser.new_context(self.guard, viewport={"width": 500, "height": 400})
        self.page = self.context.new_page()
        self.page.set_default_timeout(5000)
        self.ids = ElementIds()
        self.episode = 0
        self.goal = ""
        self._steps = 0
        self._roots: list = []

    def select_instance(self, seed: int, index: int) -> None:
        """Make the next :meth:`reset` play episode ``index`` (0-based) of the run with seed ``seed``.

        Its page seed is :func:`page_seed` ``(seed, index, instances)``: the problem episode ``index + 1`` of
        ``jitrl web --seed SEED`` plays, whatever ran before it.
        """
        self.seed, self.episode = seed, index

    def reset(self) -> tuple[str, dict[str, Any]]:
        """Start a new problem instance: (observation, info)."""
        from playwright.sync_api import Error as PlaywrightError

        i = self.episode
        self.episode += 1
        instance = page_seed(self.seed, i, self.instances)
        page = self.page
        try:
            page.goto(self.url)
            page.wait_for_function("() => typeof core !== 'undefined' && core.cover_div !== null")
            page.add_style_tag(content=_HIDE_HUD)
            page.evaluate("s => Math.seedrandom(s)", instance)
            page.evaluate("t => { core.EPISODE_MAX_TIME = t; }", EPISODE_MAX_TIME_MS)
            page.evaluate("() => core.startEpisodeReal()")
            page.wait_for_function("() => WOB_TASK_READY")
            utterance = page.evaluate("() => core.getUtterance()")
        except PlaywrightError as exc:
            raise AdapterError(f"MiniWoB task {self.task} did not start: {str(exc).splitlines()[0][:160]}") from None
        self.goal = utterance.get("utterance", "") if isinstance(utterance, dict) else str(utterance)
        self.ids.reset()
        self._steps = 0
        return self._observe(error=None, meta={"done": False, "raw": 0.0})

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Parse and perform an action: (observation, reward = raw reward at the end, terminated, truncated, info)."""
        self._steps += 1
        try:
            error = execute(self.page, parse_action(action), self.ids)
        except ActionError as exc:
            error = str(exc)
        meta = self.page.evaluate(_META)
        if not meta["done"]:
            self.page.wait_for_timeout(20)  # let click handlers that end the episode asynchronously run
            meta = self.page.evaluate(_META)
        obs, info = self._observe(error=error, meta=meta)
        truncated = not info["done"] and self._steps >= self.max_steps
        if truncated:  # the page's timeout, at the step limit (see TIMEOUT_REWARD)
            info.update(score=TIMEOUT_REWARD, raw_reward=TIMEOUT_REWARD, reason="step limit (MiniWoB's timeout)")
        return obs, info["score"], bool(info["done"]), truncated, info

    def _observe(self, error: str | None, meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        done = bool(meta["done"])
        raw = float(meta["raw"] or 0.0) if done else 0.0
        url = self.page.url
        if done:
            roots, candidates, keys = [], [], []
            obs = f"goal: {self.goal}\nurl: {short_url(url)}\nepisode over: reward {raw:g}"
            key = f"done {raw:g}"
        else:
            roots = take_snapshot(self.page, self.ids)
            scrollable = bool(self.page.evaluate("() => document.documentElement.scrollHeight > window.innerHeight + 4"))
            candidates = enumerate_candidates(self.goal, roots, can_scroll=scrollable)
            values = goal_values(self.goal, roots)
            keys = [action_key(c, self.goal, roots, values) for c in candidates]
            obs = render_observation(self.goal, url, roots, error)
            key = state_key(self.goal, url, roots, values=values)
        self._roots = roots
        return obs, {
            "score": raw, "max_score": 1.0, "location": short_url(url), "inventory": [], "candidates": candidates,
            "state_hash": hashlib.sha1(obs.encode()).hexdigest()[:16], "state_key": key, "victory": done and raw > 0,
            "game_over": False, "moves": self._steps, "valid_actions_seconds": 0.0, "goal": self.goal, "url": url,
            "raw_reward": raw, "done": done,
            "error": error, "blocked_requests": len(self.guard.blocked), "reason": meta.get("reason"),
            "action_keys": keys,
        }

    def close(self) -> None:
        """Close the page's context, and the browser when this environment started it."""
        try:
            self.context.close()
        finally:
            if self._own:
                self.browser.close()
