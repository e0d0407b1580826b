"""The WebArena episode loop (`WebArenaEnv.reset/step`, HAR, answer files, scoring) on a loopback site.

A small site on 127.0.0.1 stands in for the shopping_admin site; real headless Chromium; fixed
actions (no model). Task 157 ("View the details of all customers") is scored from the HAR by
webarena-verified's NetworkEventEvaluator, task 42 ("Get the top 2 search term(s) in my store")
from the answer.
"""

from __future__ import annotations

import json

import pytest

from tests.test_web_egress import browser, outside, start_site, stop_site  # noqa: F401 - shared fixtures

ADMIN = "/admin"
WA_VARS = ("WA_SHOPPING", "WA_SHOPPING_ADMIN", "WA_REDDIT", "WA_GITLAB", "WA_WIKIPEDIA", "WA_MAP")


def admin_pages(out: str) -> dict[str, tuple[int, dict[str, str], str]]:
    def page(title: str, body: str) -> tuple[int, dict[str, str], str]:
        return 200, {}, f"<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"

    return {
        ADMIN: page("Dashboard", f"<nav><a href='{ADMIN}/search/term/report/'>Search Terms</a> "
                                 f"<a href='{ADMIN}/customer/index/'>All Customers</a> "
                                 f"<a href='{ADMIN}/partner'>Partner offers</a></nav>"),
        f"{ADMIN}/search/term/report/": page("Search Terms Report", (
            "<table><tr><th>Search Query</th><th>Hits</th></tr>"
            "<tr><td>hollister</td><td>19</td></tr><tr><td>Joust Bag</td><td>10</td></tr>"
            "<tr><td>nike</td><td>4</td></tr></table>")),
        f"{ADMIN}/customer/index/": page("Customers", "<table><tr><td>Veronica Costello</td></tr></table>"),
        f"{ADMIN}/partner": (302, {"Location": f"{out}/offers"}, ""),  # a redirect off the allow-list
    }


@pytest.fixture(scope="module")
def site(outside):
    s = start_site(admin_pages(f"http://127.0.0.1:{outside.port}"))
    yield s
    stop_site(s)


@pytest.fixture
def admin_url(site, monkeypatch):
    for var in WA_VARS:
        monkeypatch.delenv(var, raising=False)
    url = f"{site.origin}{ADMIN}"
    monkeypatch.setenv("WA_SHOPPING_ADMIN", url)
    return url


def action(info: dict, verb: str, name: str) -> str:
    """The candidate ``verb [N] "name"`` of the current observation."""
    return next(c for c in info["candidates"] if c.startswith(verb) and c.endswith(json.dumps(name)))


def test_navigate_task_scored_from_the_har(browser, site, outside, admin_url, tmp_path):
    from adapters.webarena_env import WebArenaEnv

    outside.events.clear()
    site.requests.clear()
    env = WebArenaEnv(157, out_dir=tmp_path, browser=browser, max_steps=10)
    try:
        assert env.goal == "View the details of all customers" and env.namespace == "webarena/shopping_admin"
        obs, info = env.reset()
        assert info["url"] == admin_url and f"url: {admin_url}" in obs and '"All Customers"' in obs
        assert 'stop ""' in info["candidates"] and "go back" not in info["candidates"]  # nothing before the start page

        # a link that redirects off the allow-list: refused below the page, counted, never reaching outside
        obs, reward, done, truncated, info = env.step(action(info, "click", "Partner offers"))
        assert (reward, done, truncated) == (0.0, False, False)
        assert info["blocked_requests"] == 1 and env.guard.blocked == [f"http://127.0.0.1:{outside.port}/offers"]
        _, _, _, _, info = env.step("go back")
        assert info["url"] == admin_url

        assert "go back" not in info["candidates"]  # back at the start page
        obs, _, done, _, info = env.step(action(info, "click", "All Customers"))
        assert not done and info["url"] == f"{admin_url}/customer/index/" and "Veronica Costello" in obs
        assert "go back" in info["candidates"]
        obs, reward, done, truncated, info = env.step('stop ""')
        assert (reward, done, truncated) == (1.0, True, False) and info["victory"] and "episode over: success" in obs
        assert info["blocked_requests"] == 1 and info["moves"] == 4
    finally:
        env.close()
    assert outside.events == []

    ep = tmp_path / "ep1" / "157"
    assert info["out_dir"] == str(ep)
    assert json.loads((ep / "agent_response.json").read_text()) == {
        "task_type": "NAVIGATE", "status": "SUCCESS", "retrieved_data": None, "error_details": None}
    result = json.loads((ep / "eval_result.json").read_text())
    assert result["status"] == "success" and result["score"] == 1.0
    entries = json.loads((ep / "network.har").read_text())["log"]["entries"]
    status = {e["request"]["url"]: e["response"]["status"] for e in entries}
    assert status[admin_url] == 200 and status[f"{admin_url}/customer/index/"] == 200
    assert status[f"{site.origin}{ADMIN}/partner"] == 302
    assert status[f"http://127.0.0.1:{outside.port}/offers"] == 403  # the egress proxy's answer, not the outside's 200

    # the site was probed (urllib) before the browser started, then got the shopping_admin header login
    assert "Python-urllib" in site.requests[0][2]["User-Agent"]
    dashboard = next(h for _, p, h in site.requests if p == ADMIN and "Chrome" in h["User-Agent"])
    assert dashboard.get("X-M2-Admin-Auto-Login") == "admin"


def test_navigate_task_failures(browser, site, admin_url, tmp_path):
    """A stop on the wrong page scores 0; the step limit writes an UNKNOWN_ERROR response."""
    from adapters.webarena_env import WebArenaEnv

    env = WebArenaEnv(157, out_dir=tmp_path, browser=browser, max_steps=2)
    try:
        env.reset()
        _, reward, done, _, info = env.step('stop ""')
        assert (reward, done, info["victory"]) == (0.0, True, False)
        assert json.loads((tmp_path / "ep1" / "157" / "eval_result.json").read_text())["status"] == "failure"

        _, info = env.reset()
        env.step(action(info, "click", "Search Terms"))
        _, reward, done, truncated, info = env.step("scroll down")
        assert (reward, done, truncated) == (0.0, False, True) and info["out_dir"] == str(tmp_path / "ep2" / "157")
    finally:
        env.close()
    response = json.loads((tmp_path / "ep2" / "157" / "agent_response.json").read_text())
    assert response["status"] == "UNKNOWN_ERROR" and response["retrieved_data"] is None
    assert json.loads((tmp_path / "ep2" / "157" / "eval_result.json").read_text())["score"] == 0.0
    assert (tmp_path / "ep2" / "157" / "network.har").is_file()


def test_retrieve_task_answer(browser, site, admin_url, tmp_path):
    from adapters.webarena_env import WebArenaEnv

    env = WebArenaEnv(42, out_dir=tmp_path, browser=browser)
    try:
        _, info = env.reset()
        obs, _, _, _, info = env.step(action(info, "click", "Search Terms"))
        assert 'cell "hollister"' in obs and 'cell "Joust Bag"' in obs
        _, reward, done, _, info = env.step('stop "[\\"hollister\\", \\"Joust Bag\\"]"')
        assert (reward, done, info["victory"], info["blocked_requests"]) == (1.0, True, True, 0)
    finally:
        env.close()
    ep = tmp_path / "ep1" / "42"
    assert json.loads((ep / "agent_response.json").read_text())["retrieved_data"] == ["hollister", "Joust Bag"]
    assert json.loads((ep / "eval_result.json").read_text())["status"] == "success"
