"""`jitrl web`: MiniWoB++ in real headless Chromium, the action grammar, the origin allow-list,
the agent end to end, and WebArena task loading / offline scoring / missing-site errors."""

from __future__ import annotations

import json
import re
import sqlite3
import time

import pytest

from adapters.base import AdapterError
from adapters.web_observation import Action, ActionError, format_action, goal_template, parse_action
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def browser():
    from adapters.browser import Browser

    b = Browser()
    yield b
    b.close()


def play(env, choose, limit=10):
    """Run one episode choosing actions with ``choose(info) -> str``; returns the last info."""
    _, info = env.reset()
    for _ in range(limit):
        _, _, terminated, truncated, info = env.step(choose(info))
        if terminated or truncated:
            break
    return info


def quoted(goal: str) -> str:
    return re.search(r'"([^"]+)"', goal).group(1)


def named(info, verb: str, name: str) -> str:
    return next(c for c in info["candidates"] if c.startswith(verb) and c.endswith(json.dumps(name)))


# -- MiniWoB through the adapter --------------------------------------------------------------
def test_click_button_correct_and_wrong(browser):
    from adapters.miniwob_env import EPISODE_MAX_TIME_MS, MiniWoBEnv

    env = MiniWoBEnv("click-button", browser, seed=0)
    try:
        for _ in range(2):
            info = play(env, lambda i: named(i, "click", quoted(i["goal"])))
            assert info["done"] and info["raw_reward"] == 1.0 and info["score"] == 1.0 and info["victory"]
        assert env.page.evaluate("() => core.EPISODE_MAX_TIME") == EPISODE_MAX_TIME_MS  # slow steps never time out

        for _ in range(10):  # an instance with a button other than the target
            _, info = env.reset()
            target = json.dumps(quoted(info["goal"]))
            others = [c for c in info["candidates"] if re.match(r'click \[\d+\] "', c) and not c.endswith(target)]
            if others:
                break
        _, reward, done, _, info = env.step(others[0])
        assert done and reward <= 0 and info["raw_reward"] <= 0 and not info["victory"]
    finally:
        env.close()


def test_enter_text_correct_and_wrong(browser):
    from adapters.miniwob_env import MiniWoBEnv

    env = MiniWoBEnv("enter-text", browser, seed=3)
    try:
        obs, info = env.reset()
        word = quoted(info["goal"])
        assert f"goal: {info['goal']}" in obs and "url: miniwob/enter-text.html" in obs
        obs, _, done, _, info = env.step(named(info, "type", word))
        assert not done and "textbox=filled" in info["state_key"] and f': {json.dumps(word)}' in obs
        _, reward, done, _, info = env.step(named(info, "click", "Submit"))
        assert done and reward == 1.0 and info["raw_reward"] == 1.0

        _, info = env.reset()
        field = next(c for c in info["candidates"] if c.startswith("type")).split(" ")[1]
        env.step(format_action(Action("type", int(field.strip("[]")), "definitely wrong")))
        _, reward, done, _, info = env.step(named(info, "click", "Submit"))
        assert done and reward <= 0 and not info["victory"]
    finally:
        env.close()


def test_seeds_play_disjoint_problem_instances(browser):
    """Episode i of seed s plays page seed s · SEED_STRIDE + i: two seeds share no problem, and ``--instances``
    cycles within a seed. (With page seed s + i, seed 1 replayed seed 0's problems one episode later.)"""
    from adapters.miniwob_env import SEED_STRIDE, MiniWoBEnv, page_seed

    assert page_seed(0, 4) == 4 and page_seed(2, 4) == 2 * SEED_STRIDE + 4 and page_seed(2, 7, instances=3) == 2 * SEED_STRIDE + 1
    env = MiniWoBEnv("enter-text", browser)
    try:
        def goal(seed, index):
            env.select_instance(seed, index)
            return env.reset()[1]["goal"]

        seed0, seed1 = [goal(0, i) for i in range(5)], [goal(1, i) for i in range(5)]
        assert not set(seed0) & set(seed1) and seed1[:4] != seed0[1:]  # enter-text draws a word per instance
        assert goal(1, 0) == goal(0, SEED_STRIDE) and goal(0, 3) == seed0[3]  # what the page seed is, and replays
        env.instances = 2
        assert [goal(1, i) for i in range(4)] == [seed1[0], seed1[1], seed1[0], seed1[1]]
    finally:
        env.close()


def test_click_checkboxes_correct(browser):
    from adapters.miniwob_env import MiniWoBEnv

    env = MiniWoBEnv("click-checkboxes", browser, seed=5)
    try:
        for _ in range(2):
            _, info = env.reset()
            names = info["goal"].removeprefix("Select ").removesuffix(" and click Submit.")
            todo = [] if names == "nothing" else [named(info, "click", n) for n in names.split(", ")]
            for action in todo:
                _, _, done, _, info = env.step(action)
                assert not done
            _, reward, done, _, info = env.step(named(info, "click", "Submit"))
            assert done and reward == 1.0 and info["victory"]
    finally:
        env.close()


def test_bad_action_is_an_error_not_an_exception(browser):
    from adapters.miniwob_env import MiniWoBEnv

    env = MiniWoBEnv("click-button", browser, max_steps=2)
    try:
        env.reset()
        obs, reward, done, truncated, info = env.step("__import__('os').system('touch /tmp/pwned')")
        assert not done and reward == 0 and "not an action" in info["error"] and "error: not an action" in obs
        _, reward, done, truncated, info = env.step("click [999]")
        assert "no element [999]" in info["error"] and truncated and not done  # step limit 2
        # the step limit stands for MiniWoB's timer, whose timeout is a failure: raw reward −1, not 0
        assert reward == info["score"] == -1.0 and not info["victory"] and "step limit" in info["reason"]
    finally:
        env.close()


def test_unknown_task():
    from adapters.miniwob_env import task_path

    with pytest.raises(AdapterError, match="unknown MiniWoB task 'click-nothing'"):
        task_path("click-nothing")
    with pytest.raises(AdapterError):
        task_path("../core/core")


# -- the action grammar -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ('click [12] "Next"', Action("click", 12, "Next")),
        ("click [3] textbox", Action("click", 3, None)),
        ("click [3]", Action("click", 3, None)),
        ('type [4] "Ann \\"Jo\\" Lee"', Action("type", 4, 'Ann "Jo" Lee')),
        ('select [7] "Ecuador"', Action("select", 7, "Ecuador")),
        ("check [2]", Action("check", 2, None)),
        ('press [2] "Enter"', Action("press", 2, "Enter")),
        ("scroll down", Action("scroll", direction="down")),
        ("go back", Action("go back")),
        ('stop "[\\"hollister\\", \\"Joust Bag\\"]"', Action("stop", text='["hollister", "Joust Bag"]')),
    ],
)
def test_parse_valid(text, expected):
    action = parse_action(text)
    assert action == expected
    assert parse_action(format_action(action)) == action  # round trip


@pytest.mark.parametrize(
    "text",
    [
        "", "click", "click 12", "click [x]", "click [1] Next", 'type [1] Paris', 'type [1] "unterminated',
        'type [1] "a"; import os', "scroll sideways", 'press [1] "Delete"', "goto http://evil.example",
        "__import__('os').system('id')", "eval('1+1')", 'click [1] "a"\nclick [2]', "page.evaluate('x')",
        'stop "x" "y"', "CLICK [1]",
    ],
)
def test_parse_invalid(text):
    with pytest.raises(ActionError):
        parse_action(text)


def test_goal_template_masks_values():
    assert goal_template('Enter "Ignacio" into the text field and press Submit.') == 'enter "#" into the text field and press submit.'
    assert goal_template("Click on Tab #3.") == "click on tab ##."


# -- security: the origin allow-list --------------------------------------------------------------
def test_other_origins_are_blocked_and_counted(browser, tmp_path):
    from adapters.browser import OriginGuard

    site = tmp_path / "site"
    site.mkdir()
    (site / "ok.css").write_text("body { color: black; }")
    (tmp_path / "secret.txt").write_text("secret")
    (site / "page.html").write_text(
        "<html><head><link rel='stylesheet' href='ok.css'></head><body>"
        "<img src='http://example.com/x.png'><img src='https://127.0.0.1:1/y.png'>"
        f"<img src='{(tmp_path / 'secret.txt').as_uri()}'>"
        "<script>window.fetched = 'pending'; fetch('http://example.org/data').then(() => window.fetched = 'loaded')"
        ".catch(() => window.fetched = 'failed');</script></body></html>"
    )
    guard = OriginGuard(file_dirs=[site])
    context = browser.new_context(guard)
    try:
        page = context.new_page()
        page.goto((site / "page.html").as_uri())
        page.wait_for_function("() => window.fetched !== 'pending'", timeout=5000)
        assert page.evaluate("() => window.fetched") == "failed"
        page.wait_for_timeout(200)
    finally:
        context.close()
    blocked = " ".join(guard.blocked)
    assert "http://example.com/x.png" in blocked and "http://example.org/data" in blocked
    assert "https://127.0.0.1:1/y.png" in blocked and "secret.txt" in blocked
    assert len(guard.blocked) >= 4 and "ok.css" not in blocked
    assert guard.allows("http://example.com/") is False and guard.allows((site / "ok.css").as_uri())


def test_no_browser_found_names_apt_get(tmp_path, monkeypatch):
    import adapters.browser as browser_mod

    monkeypatch.delenv("JITRL_CHROMIUM", raising=False)
    monkeypatch.setattr(browser_mod, "DEFAULT_CHROMIUM", str(tmp_path / "none"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AdapterError, match="apt-get install chromium"):
        browser_mod.find_chromium()


def test_guard_origins():
    from adapters.browser import OriginGuard

    guard = OriginGuard(origins={"http://localhost:7780"})
    assert guard.allows("http://localhost:7780/admin/dashboard")
    assert not guard.allows("http://localhost:7781/")
    assert not guard.allows("https://localhost:7780/")
    assert not guard.allows("file:///etc/passwd")


# -- the agent end to end ---------------------------------------------------------------------------
@pytest.mark.slow
def test_web_cli_three_episodes_json_and_memory(tmp_path):
    mem = tmp_path / "mem"
    proc = run_cli("web", "--suite", "miniwob", "--task", "click-button", "--episodes", "3", "--json",
                   "--memory", str(mem), timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert [r["episode"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["task"] == "click-button" and r["suite"] == "miniwob" and r["game"] == "miniwob"
        assert isinstance(r["success"], bool) and r["success"] == (r["score"] > 0)
        assert 1 <= r["steps"] <= 10 and r["tokens_evaluated"] > 0 and r["blocked_requests"] == 0
        assert r["params"]["prior"] == "sequence"  # the web default (the prior issue 4's MiniWoB++ runs measured)
    total = sum(r["steps"] for r in rows)
    with sqlite3.connect(mem / "memory.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM steps WHERE game='miniwob'").fetchone()[0] == total
        assert db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 3
        keys = [k for (k,) in db.execute("SELECT state_key FROM steps")]
    assert all(k.startswith('goal: click on the "#" button.') for k in keys)
    assert rows[-1]["memory_steps"] == total


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--avoid-cycles", "--no-avoid-cycles"])
def test_an_action_that_led_back_to_a_page_already_seen_gets_the_lowest_advantage_there(tmp_path, flag):
    """Cycle avoidance on real choose-list pages (on by default in `jitrl web`): recomputed from the step log, an
    action that earlier in the episode led from a page (the observation, at the same score) straight back to a page
    already seen (selecting the selected option again) has Ã = −1 on that page; with --no-avoid-cycles it does not."""
    logs = tmp_path / "logs"
    args = ["web", "--task", "choose-list", "-n", "2", "--seed", "0", "--json", "--memory", str(tmp_path / "mem"),
            "--log-dir", str(logs)]
    proc = run_cli(*args, *([flag] if flag == "--no-avoid-cycles" else []), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert all(json.loads(line)["params"]["avoid_cycles"] is (flag == "--avoid-cycles") for line in proc.stdout.splitlines())
    rows = [json.loads(line) for p in sorted(logs.glob("*.jsonl")) for line in p.read_text().splitlines()]
    norm = lambda a: " ".join(a.lower().split())  # noqa: E731
    closing_candidates = []
    for uuid in dict.fromkeys(r["uuid"] for r in rows):
        visited, closing, previous = set(), {}, None
        for row in sorted((r for r in rows if r["uuid"] == uuid), key=lambda r: r["step"]):
            place = (row["observation"], row["score"])
            if place in visited and previous is not None:
                closing.setdefault(previous[0], set()).add(previous[1])
            visited.add(place)
            closing_candidates += [c["advantage"] for c in row["candidates"] if norm(c["action"]) in closing.get(place, ())]
            previous = (place, norm(row["action"]))
    assert closing_candidates, "the run must close a cycle"
    if flag == "--avoid-cycles":
        assert all(a == -1.0 for a in closing_candidates)
    else:
        assert not all(a == -1.0 for a in closing_candidates)


# -- WebArena ---------------------------------------------------------------------------------------
def test_webarena_tasks_load():
    from adapters.webarena_env import build_config, load_task

    config = build_config(None, {})
    t42 = load_task(42, "verified", config)
    assert t42.intent == "Get the top 2 search term(s) in my store"
    assert t42.sites == ("shopping_admin",) and t42.start_url == "__SHOPPING_ADMIN__" and t42.task_type == "RETRIEVE"
    assert load_task(42, "original", config).intent == "List the top 2 search terms in my store"
    assert load_task(1, "verified", config).sites == ("shopping_admin",)
    assert load_task(100, "verified", config).sites == ("map",)
    with pytest.raises(AdapterError, match="no WebArena task 99999"):
        load_task(99999, "verified", config)


def test_webarena_env_vars_map_into_config():
    from adapters.webarena_env import build_config, load_task, site_urls

    config = build_config(None, {"WA_SHOPPING_ADMIN": "http://localhost:7780/admin/", "WA_MAP": "http://m:3000"})
    assert site_urls(load_task(42, config=config), config, probe=False) == {"shopping_admin": "http://localhost:7780/admin"}
    with pytest.raises(AdapterError, match="WA_SHOPPING_ADMIN"):
        site_urls(load_task(42, config=build_config(None, {})), build_config(None, {}), probe=False)


def test_webarena_evaluator_scores_correct_and_wrong(tmp_path):
    from webarena_verified import WebArenaVerified

    from adapters.webarena_env import build_config, evaluate, make_response

    wa = WebArenaVerified(config=build_config(None, {"WA_SHOPPING_ADMIN": "http://localhost:7780/admin"}))
    good = make_response("RETRIEVE", '["Joust Bag", "hollister"]')
    assert good == {"task_type": "RETRIEVE", "status": "SUCCESS", "retrieved_data": ["Joust Bag", "hollister"], "error_details": None}
    result = evaluate(wa, 42, good)
    assert str(result.status) == "success" and result.score == 1.0
    (tmp_path / "agent_response.json").write_text(json.dumps(good))
    assert evaluate(wa, 42, tmp_path / "agent_response.json").score == 1.0
    for bad in (make_response("RETRIEVE", '["hollister", "nike"]'), make_response("RETRIEVE", "hollister"),
                make_response("RETRIEVE", None)):
        result = evaluate(wa, 42, bad)
        assert str(result.status) != "success" and result.score == 0.0


NO_SITES = {v: "" for v in ("WA_SHOPPING", "WA_SHOPPING_ADMIN", "WA_REDDIT", "WA_GITLAB", "WA_WIKIPEDIA", "WA_MAP")}


@pytest.mark.parametrize(
    "extra, message",
    [({}, "set WA_SHOPPING_ADMIN="), ({"WA_SHOPPING_ADMIN": "http://127.0.0.1:9/admin"}, "not reachable at http://127.0.0.1:9/admin")],
)
def test_webarena_missing_site_is_one_line_error(tmp_path, extra, message):
    t0 = time.monotonic()
    proc = run_cli("web", "--task-id", "42", "--memory", str(tmp_path / "m"), "--out", str(tmp_path / "out"),
                   env={**NO_SITES, **extra}, timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 2 and proc.stdout == ""
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err and "WA_SHOPPING_ADMIN" in err, err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["web", "--task", "no-such-task"], "unknown MiniWoB task 'no-such-task'"),
        (["web"], "give --task NAME"),
        (["web", "--task", "click-button", "--episodes", "0"], "--episodes must be at least 1"),
        (["web", "--task-id", "42", "--dataset", "v2"], "--dataset must be verified or original"),
        (["web", "--task", "click-button", "--prior", "uniform"], "--prior must be sequence or constrained"),
        (["web", "--task", "click-button", "--chromium", "/nonexistent/chromium"], "Chromium not found at /nonexistent/chromium"),
    ],
)
def test_web_bad_input(args, message, tmp_path):
    proc = run_cli(*args, "--memory", str(tmp_path / "m"), timeout=30)
    assert proc.returncode == 2 and proc.stdout == ""
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "m").exists()
