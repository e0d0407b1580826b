"""WebArena tasks by id (``webarena-verified`` package): live sites in Chromium, offline scoring.

Sites come from ``--config FILE`` (webarena-verified's JSON config, ``{"environments":
{"__SHOPPING_ADMIN__": {"urls": [...]}, ...}}``) and/or the variables of :data:`SITE_ENV`
(``WA_SHOPPING_ADMIN=http://localhost:7780/admin``; a variable overrides the file). The
package itself reads no variables: they are mapped into its config here.

Per episode n the output directory ``<out>/ep<n>/<task_id>/`` receives ``network.har``
(Playwright's HAR recording, written when the context closes), ``agent_response.json``
(the package's ``FinalAgentResponse`` format) and ``eval_result.json``; each ``<out>/ep<n>``
is a valid ``webarena-verified eval-tasks --output-dir``.

The episode ends with ``stop "answer"`` (or at the step limit, as ``UNKNOWN_ERROR``); the
score is the evaluator's (1.0 = success). Memory namespace: ``webarena/<site>``.

The browser reaches only the sites' origins (:mod:`adapters.browser`): anything else, a redirect
off the site included, is refused and counted in ``info["blocked_requests"]``; the HAR shows a
request refused by the context's egress proxy with status 403.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.base import AdapterError
from adapters.browser import Browser, OriginGuard, origin_of
from adapters.web_observation import (
    ActionError, ElementIds, enumerate_candidates, execute, parse_action, render_observation, short_texts,
    state_key, take_snapshot,
)

SITE_ENV = {
    "shopping": "WA_SHOPPING", "shopping_admin": "WA_SHOPPING_ADMIN", "reddit": "WA_REDDIT",
    "gitlab": "WA_GITLAB", "wikipedia": "WA_WIKIPEDIA", "map": "WA_MAP",
}
PROBE_TIMEOUT_S = 2.0
logging.getLogger("WebArena-Verified").setLevel(logging.CRITICAL)  # it logs tracebacks for error results


@dataclass(frozen=True)
class WebTask:
    """A WebArena task: id, intent (the goal), sites (e.g. ``shopping_admin``), start URL template, task type."""

    task_id: int
    intent: str
    sites: tuple[str, ...]
    start_url: str
    task_type: str  # RETRIEVE, MUTATE or NAVIGATE


def build_config(config_file: Path | None = None, environ: dict[str, str] | None = None) -> Any:
    """webarena-verified's config from a JSON file and the ``WA_*`` variables.

    Raises:
        AdapterError: unreadable or invalid config file.
    """
    from webarena_verified.types.config import EnvironmentConfig, WebArenaVerifiedConfig
    from webarena_verified.types.task import WebArenaSite

    environ = os.environ if environ is None else environ
    if config_file is not None:
        try:
            config = WebArenaVerifiedConfig.model_validate(json.loads(Path(config_file).read_text()))
        except (OSError, ValueError) as exc:
            raise AdapterError(f"cannot read WebArena config {config_file}: {' '.join(str(exc).split())[:160]}") from None
    else:
        config = WebArenaVerifiedConfig()
    envs = dict(config.environments or {})
    for site, var in SITE_ENV.items():
        url = environ.get(var, "").strip().rstrip("/")
        if url:
            envs[WebArenaSite(site)] = EnvironmentConfig(urls=[url], use_header_login=site == "shopping_admin")
    config.environments = envs or None
    return config


def load_task(task_id: int, dataset: str = "verified", config: Any = None) -> WebTask:
    """A task from the verified dataset (812 tasks) or the original ``test.raw.json``.

    The task type always comes from the verified dataset (ids are shared).

    Raises:
        AdapterError: unknown dataset or task id.
    """
    from webarena_verified import WebArenaVerified

    if dataset not in ("verified", "original"):
        raise AdapterError(f"--dataset must be verified or original, got {dataset!r}")
    wa = WebArenaVerified(config=config)
    try:
        task = wa.get_task(task_id)
    except Exception:  # noqa: BLE001 - the package raises its own types for unknown ids
        raise AdapterError(f"no WebArena task {task_id} (ids are 0..811)") from None
    kind = "RETRIEVE" if task.is_retrieve_task else "MUTATE" if task.is_mutate_task else "NAVIGATE"
    sites = tuple(s.value for s in task.sites)
    if dataset == "verified":
        return WebTask(task_id, task.intent, sites, task.start_urls[0], kind)
    from webarena_verified.utils import get_package_assets_path

    raw = json.loads((get_package_assets_path() / "dataset" / "test.raw.json").read_text())
    row = next((t for t in raw if t["task_id"] == task_id), None)
    if row is None:
        raise AdapterError(f"no task {task_id} in the original WebArena dataset")
    return WebTask(task_id, row["intent"], tuple(row["sites"]), row["start_url"].split(" |AND| ")[0], kind)


def site_urls(task: WebTask, config: Any, probe: bool = True) -> dict[str, str]:
    """The configured URL of each of the task's sites, checked to answer within 2 s.

    Raises:
        AdapterError: naming the variable to set when a site is not configured or not reachable.
    """
    from webarena_verified.types.task import WebArenaSite

    envs = config.environments or {}
    urls: dict[str, str] = {}
    for site in task.sites:
        var = SITE_ENV.get(site, f"WA_{site.upper()}")
        env = envs.get(WebArenaSite(site))
        if env is None or not env.active_url:
            raise AdapterError(
                f"WebArena task {task.task_id} needs the {site} site: set {var}=http://HOST:PORT or pass --config FILE "
                f"(start it with `webarena-verified env start --site {site}`)"
            )
        urls[site] = env.active_url.rstrip("/")
        if probe:
            try:
                urllib.request.urlopen(urllib.request.Request(urls[site], method="GET"), timeout=PROBE_TIMEOUT_S).close()
            except urllib.error.HTTPError:
                pass  # the server answered (a 4xx/5xx on the root is still a live site)
            except (OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise AdapterError(f"WebArena site {site} is not reachable at {urls[site]} ({reason}); check {var}") from None
    return urls


def make_response(task_type: str, answer: str | None) -> dict[str, Any]:
    """The ``FinalAgentResponse`` JSON for a ``stop`` answer (None: the step limit was reached).

    A retrieve answer that is a JSON array is used as the list; any other text becomes a one-item list.
    """
    if answer is None:
        return {"task_type": task_type, "status": "UNKNOWN_ERROR", "retrieved_data": None,
                "error_details": "step limit reached without an answer"}
    data = None
    if task_type == "RETRIEVE":
        try:
            parsed = json.loads(answer)
            data = parsed if isinstance(parsed, list) else [answer]
        except ValueError:
            data = [answer]
    return {"task_type": task_type, "status": "SUCCESS", "retrieved_data": data, "error_details": None}


def evaluate(wa: Any, task_id: int, response: dict[str, Any] | Path, har: Path | None = None) -> Any:
    """Score a response (and HAR, if it has entries) with webarena-verified; returns its ``TaskEvalResult``.

    ``result.status`` is ``success``, ``failure`` or ``error``; ``result.score`` in [0, 1]. Never raises
    for bad responses (the package reports them as failure/error).
    """
    from webarena_verified.types.tracing import NetworkTrace

    trace: Any = NetworkTrace.model_construct(is_playwright=False, src_file=Path("<none>"), events=())
    if har is not None and har.is_file():
        try:
            if json.loads(har.read_text()).get("log", {}).get("entries"):
                trace = har
        except ValueError:
            pass
    return wa.evaluate_task(task_id=task_id, agent_response=response, network_trace=trace)


class WebArenaEnv:
    """One WebArena task against live sites (see the module docstring).

    Args:
        task_id: 0..811; dataset: ``verified`` or ``original``; config_file: ``--config``.
        out_dir: where the per-episode HAR/response/eval files go.
        browser/chromium: a shared :class:`Browser`, or the executable for an owned one.
        max_steps: step limit (default 30).

    ``info`` keys: those of :data:`adapters.base.INFO_KEYS` (score: the evaluator's once the episode ends,
    else 0; state_hash: a digest of the observation, None once over; valid_actions_seconds 0.0), and
    goal, url, done, error, blocked_requests (out_dir once over).

    Raises:
        AdapterError: unknown task, site not configured or unreachable (checked before the browser starts).
    """

    #: ``info["state_hash"]`` is a digest of the observation, not a world-state key
    state_hash_kind = None

    def __init__(self, task_id: int, dataset: str = "verified", config_file: Path | None = None,
                 out_dir: Path = Path("webarena-out"), browser: Browser | None = None, chromium: str | None = None,
                 max_steps: int = 30) -> None:
        from webarena_verified import WebArenaVerified

        self.config = build_config(config_file)
        self.task = load_task(task_id, dataset, self.config)
        self.urls = site_urls(self.task, self.config)
        self.wa = WebArenaVerified(config=self.config)
        self.name = f"webarena-{task_id}"
        self.namespace = f"webarena/{self.task.sites[0]}"
        self.out_dir = Path(out_dir)
        self.max_steps = max_steps
        self._own = browser is None
        self.browser = browser or Browser(chromium)
        self.guard = OriginGuard(origins={origin_of(u) for u in self.urls.values()})
        self.ids = ElementIds()
        self.context: Any = None
        self.page: Any = None
        self.episode = 0
        self._steps = 0
        self.result: Any = None
        self._start_index = 0

    @property
    def goal(self) -> str:
        return self.task.intent

    def _start_url(self) -> str:
        url = self.task.start_url
        for site, base in self.urls.items():
            url = url.replace(f"__{site.upper()}__", base)
        return url

    def reset(self) -> tuple[str, dict[str, Any]]:
        """Open a fresh context (recording a HAR) at the task's start URL: (observation, info)."""
        self._close_context()
        self.episode += 1
        self.ep_dir = self.out_dir / f"ep{self.episode}" / str(self.task.task_id)
        self.ep_dir.mkdir(parents=True, exist_ok=True)
        headers = {}
        if "shopping_admin" in self.task.sites:
            from webarena_verified.types.task import WebArenaSite

            admin = (self.config.environments or {}).get(WebArenaSite.SHOPPING_ADMIN)
            if admin is not None and admin.use_header_login:
                name = self.wa.get_custom_auth_header_name("shopping_admin")
                headers[name] = (admin.credentials or {}).get("username") or "admin"
        self.context = self.browser.new_context(self.guard, record_har_path=str(self.ep_dir / "network.har"),
                                                extra_http_headers=headers or None, viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(10000)
        self.ids.reset()
        self._steps = 0
        self.result = None
        error = None
        try:
            self.page.goto(self._start_url(), timeout=30000)
        except Exception as exc:  # noqa: BLE001 - shown to the agent as the last error
            error = f"start page failed: {str(exc).splitlines()[0][:160]}"
        self._start_index = self._history_index()
        return self._observe(error)

    def _history_index(self) -> int:
        """The current entry's index in the tab's session history (the Navigation API; 0 if unavailable)."""
        try:
            return int(self.page.evaluate("() => (window.navigation && navigation.currentEntry) ? navigation.currentEntry.index : 0"))
        except Exception:  # noqa: BLE001 - a page being replaced mid-evaluate
            return 0

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Perform an action; ``stop "answer"`` ends and scores the episode."""
        self._steps += 1
        try:
            parsed = parse_action(action)
        except ActionError as exc:
            parsed, error = None, str(exc)
        if parsed is not None and parsed.kind == "stop":
            info = self._finish(parsed.text or "")
            return info["observation"], info["score"], True, False, info
        if parsed is not None:
            error = execute(self.page, parsed, self.ids)
            try:
                self.page.wait_for_load_state("domcontentloaded", timeout=10000)
            except Exception:  # noqa: BLE001
                pass
        if self._steps >= self.max_steps:
            info = self._finish(None)
            return info["observation"], info["score"], False, True, info
        obs, info = self._observe(error)
        return obs, 0.0, False, False, info

    def _finish(self, answer: str | None) -> dict[str, Any]:
        response = make_response(self.task.task_type, answer)
        (self.ep_dir / "agent_response.json").write_text(json.dumps(response, indent=2))
        self._close_context()  # writes the HAR
        self.result = evaluate(self.wa, self.task.task_id, response, self.ep_dir / "network.har")
        (self.ep_dir / "eval_result.json").write_text(json.dumps(self.result.model_dump(mode="json"), default=str, indent=2))
        score = float(self.result.score or 0.0)
        obs = f"goal: {self.goal}\nepisode over: {self.result.status} (score {score:g})"
        return {"observation": obs, "score": score, "max_score": 1.0, "location": self.task.sites[0], "inventory": [],
                "candidates": [], "state_key": f"done {score:g}", "state_hash": None,
                "victory": str(self.result.status) == "success", "game_over": False, "moves": self._steps,
                "valid_actions_seconds": 0.0, "goal": self.goal, "done": True,
                "blocked_requests": len(self.guard.blocked), "out_dir": str(self.ep_dir)}

    def _observe(self, error: str | None) -> tuple[str, dict[str, Any]]:
        roots = take_snapshot(self.page, self.ids)
        url = self.page.url
        # the Navigation API's index, not history.length: the latter counts the about:blank the page
        # opened on and the entries left forward after a `go back`
        can_back = self._history_index() > self._start_index
        answers = [""] if self.task.task_type != "RETRIEVE" else short_texts(roots)
        candidates = enumerate_candidates(self.goal, roots, can_scroll=True, can_go_back=can_back, stop_answers=answers)
        obs = render_observation(self.goal, url, roots, error)
        return obs, {
            "score": 0.0, "max_score": 1.0, "location": url, "inventory": [], "candidates": candidates,
            "state_hash": hashlib.sha1(obs.encode()).hexdigest()[:16], "state_key": state_key(self.goal, url, roots),
            "victory": False, "game_over": False, "moves": self._steps, "valid_actions_seconds": 0.0, "goal": self.goal,
            "url": url, "done": False,
            "error": error, "blocked_requests": len(self.guard.blocked),
        }

    def _close_context(self) -> None:
        if self.context is not None:
            try:
                self.context.close()
            finally:
                self.context = self.page = None

    def close(self) -> None:
        """Close the context (writing its HAR) and an owned browser."""
        try:
            self._close_context()
        finally:
            if self._own:
                self.browser.close()
