"""Actions that transfer between web instances: the memory keys an action by what it does (the element's role
and name, goal values masked), not by the instance's element id and words. Real MiniWoB++ pages in headless
Chromium, the real model and memory."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from adapters.web_observation import Node, action_key, backoff_key, goal_values, state_key
from tests.conftest import run_cli
from tests.test_web import browser, quoted  # noqa: F401  (the module-scoped browser fixture)


def test_action_key_masks_goal_values_ids_and_tells_like_elements_apart():
    roots = [Node("main", children=[Node("button", "Paris", ref="e1", id=3), Node("textbox", ref="e2", id=4),
                                    Node("button", "Submit", ref="e3", id=5), Node("checkbox", ref="e4", id=6),
                                    Node("checkbox", ref="e5", id=7)])]
    goal = 'Enter "Paris" and press Submit.'
    assert action_key('click [3] "Paris"', goal, roots) == 'click button "#goal"'
    assert action_key('type [4] "Paris"', goal, roots) == 'type textbox "#goal"'
    assert action_key('click [5] "Submit"', goal, roots) == 'click button "Submit"'
    assert action_key("click [6] checkbox", goal, roots) == "click checkbox"
    assert action_key("click [7] checkbox", goal, roots) == "click checkbox #2"  # told apart by position
    assert action_key("scroll down", goal, roots) == "scroll down"
    assert action_key("click [99]", goal, roots) == "click [99]"  # no such element: the string itself


def test_a_role_the_goal_names_is_masked_and_keys_back_off_to_the_kind_of_element():
    roots = [Node("main", children=[Node("checkbox", "Hh8", ref="e1", id=3), Node("radio", "US", ref="e2", id=4),
                                    Node("checkbox", "o", ref="e3", id=5), Node("textbox", ref="e4", id=6)])]
    goal = 'Click on a "checkbox" widget.'
    keys = [action_key(a, goal, roots) for a in ('click [3] "Hh8"', 'click [4] "US"', 'click [5] "o"', "click [6] textbox")]
    assert keys == ['click #goal "Hh8"', 'click radio "US"', 'click #goal "o"', "click textbox"]
    assert [backoff_key(k) for k in keys] == ["click #goal", "click radio", "click #goal", "click textbox"]
    assert '#goal "Hh8"; radio "US"' in state_key(goal, "miniwob/click-widget.html", roots)
    # names that are goal texts stay; positions among like elements go
    assert backoff_key('type textbox "#goal" #2') == 'type textbox "#goal"'
    assert backoff_key('click button "Submit"') == "click button"
    assert backoff_key('click link "say \\"hi\\"" #3') == "click link"
    assert backoff_key("scroll down") == "scroll down"


def test_element_names_the_goal_mentions_are_masked_in_keys_and_in_the_goal():
    """click-checkboxes' goal lists the boxes to tick in plain words (no quotes, some without digits or capitals):
    a box the goal names is "#goal" in every instance, the others keep their names."""
    roots = [Node("main", children=[Node("checkbox", "fzzqo", ref="e1", id=3), Node("checkbox", "NYYyS82", ref="e2", id=4),
                                    Node("checkbox", "abc", ref="e3", id=5), Node("button", "Submit", ref="e4", id=6)])]
    goal = "Select fzzqo, NYYyS82 and click Submit."
    assert goal_values(goal, roots) == {"fzzqo", "nyyys82"}
    assert [action_key(a, goal, roots) for a in ('click [3] "fzzqo"', 'click [4] "NYYyS82"', 'click [5] "abc"',
                                                 'click [6] "Submit"')] == [
        'click checkbox "#goal"', 'click checkbox "#goal" #2', 'click checkbox "abc"', 'click button "Submit"']
    assert state_key(goal, "miniwob/click-checkboxes.html", roots).startswith(
        'goal: select #, # and click submit. | url: miniwob/click-checkboxes.html | focus: none | checkbox "#goal"; '
        'checkbox "#goal"; checkbox "abc"; button "Submit"')
    assert goal_values("Select abcd and click Submit.", roots) == set()  # "abc" is no whole word of it


def test_a_ticked_box_is_another_action_and_the_next_unticked_goal_box_takes_the_first_ones_key():
    """Clicking a ticked box undoes the tick: the key shows the element's state, in exact and back-off keys, and
    positions count among elements in the same state (the first unticked goal box is always the same key)."""
    goal = "Select fzzqo, NYYyS82 and click Submit."

    def page(*ticked):
        return [Node("main", children=[
            Node("checkbox", name, ref=f"e{i}", id=3 + i, attrs={"checked": ""} if name in ticked else {})
            for i, name in enumerate(("fzzqo", "NYYyS82", "abc"))] + [Node("button", "Submit", ref="e9", id=9)])]

    clicks = ('click [3] "fzzqo"', 'click [4] "NYYyS82"', 'click [5] "abc"')
    assert [action_key(a, goal, page()) for a in clicks] == [
        'click checkbox "#goal"', 'click checkbox "#goal" #2', 'click checkbox "abc"']
    assert [action_key(a, goal, page("fzzqo", "abc")) for a in clicks] == [
        'click checkbox "#goal"[checked]', 'click checkbox "#goal"', 'click checkbox "abc"[checked]']
    assert [action_key(a, goal, page("fzzqo", "NYYyS82")) for a in clicks[:2]] == [
        'click checkbox "#goal"[checked]', 'click checkbox "#goal"[checked] #2']
    assert backoff_key('click checkbox "abc"[checked]') == "click checkbox[checked]"
    assert backoff_key('click checkbox "#goal"[checked] #2') == 'click checkbox "#goal"[checked]'
    assert 'checkbox "#goal"[checked]; checkbox "#goal"; checkbox "abc"[checked]' in state_key(
        goal, "miniwob/click-checkboxes.html", page("fzzqo", "abc"))


def test_a_real_ticked_box_has_its_own_key_and_unticking_restores_the_first_one(browser):  # noqa: F811
    """On the real click-checkboxes page: the tick the page shows is in the key of the box's next click."""
    from adapters.miniwob_env import MiniWoBEnv

    env = MiniWoBEnv("click-checkboxes", browser, seed=5)
    try:
        _, info = env.reset()
        i = info["action_keys"].index('click checkbox "#goal"')
        box = info["candidates"][i]
        _, _, done, _, info = env.step(box)
        assert not done and info["action_keys"][info["candidates"].index(box)] == 'click checkbox "#goal"[checked]'
        _, _, done, _, info = env.step(box)
        assert not done and info["action_keys"][info["candidates"].index(box)] == 'click checkbox "#goal"'
    finally:
        env.close()


def test_the_goal_button_has_one_key_in_every_click_button_instance(browser):  # noqa: F811
    from adapters.miniwob_env import MiniWoBEnv

    env = MiniWoBEnv("click-button", browser, seed=0)
    concrete, keys = set(), set()
    try:
        for _ in range(4):
            _, info = env.reset()
            target = json.dumps(quoted(info["goal"]))
            i = next(i for i, c in enumerate(info["candidates"]) if c.startswith("click") and c.endswith(target))
            concrete.add(info["candidates"][i])
            keys.add(info["action_keys"][i])
            assert len(info["action_keys"]) == len(info["candidates"])
    finally:
        env.close()
    assert len(concrete) > 1  # the instances differ (ids, words)
    assert keys == {'click button "#goal"'}


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--abstract-actions", "--exact-actions"])
def test_what_earlier_instances_taught_reaches_a_new_instance_only_with_abstract_keys(tmp_path, flag):
    """Four click-button instances: a candidate has experience behind it (count > 0) only where what memory
    knows it by was taken before; with abstract keys that happens across instances, with exact strings not."""
    memory, logs = tmp_path / "memory", tmp_path / "logs"
    result = run_cli("web", "--task", "click-button", "-n", "4", "--seed", "0", "--json", "--memory", str(memory),
                     "--log-dir", str(logs), flag, "--no-backoff-actions")  # back-off: its own test below
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(memory / "memory.sqlite") as con:
        stored = con.execute("SELECT episode_id, action FROM steps ORDER BY id").fetchall()
    rows = [json.loads(line) for p in sorted(logs.glob("*.jsonl")) for line in p.read_text().splitlines()]
    counted = []
    for row in rows:
        before = {a for e, a in stored if e < row["episode"]}
        for c in row["candidates"]:
            known_as = c["key"] if flag == "--abstract-actions" else c["action"]
            if c["count"] > 0:
                assert known_as in before, (row["episode"], c)
                counted.append(known_as)
    if flag == "--abstract-actions":
        assert all(c["key"] for r in rows for c in r["candidates"])
        assert not any(re.search(r"\[\d+\]", a) for _, a in stored)  # keys, no element ids
        assert counted  # a new instance's action had an earlier instance's experience behind it
    else:
        assert all(c["key"] is None for r in rows for c in r["candidates"])
        assert all(re.search(r"\[\d+\]", a) for _, a in stored if a.startswith("click"))


@pytest.mark.slow
def test_cross_task_fraction_counts_neighbours_from_other_tasks(tmp_path):
    """One memory for the suite: click-link's first episode retrieves click-button's steps (all from another
    task); click-button's second episode retrieves only its own task's."""
    memory = tmp_path / "memory"
    result = run_cli("web", "--tasks", "click-button,click-link", "-n", "2", "--seed", "0", "--json",
                     "--memory", str(memory))
    assert result.returncode == 0, result.stderr
    episodes = {(e["task"], e["episode"]): e for e in map(json.loads, result.stdout.splitlines())}
    assert episodes[("click-button", 1)]["cross_task_fraction"] is None  # an empty memory: nothing retrieved
    assert episodes[("click-button", 2)]["cross_task_fraction"] == 0.0
    assert episodes[("click-link", 1)]["cross_task_fraction"] == 1.0
    assert 0.0 < episodes[("click-link", 2)]["cross_task_fraction"] < 1.0
    with sqlite3.connect(memory / "memory.sqlite") as con:
        tasks = [t for (t,) in con.execute("SELECT json_extract(params, '$.task') FROM episodes ORDER BY id")]
    assert tasks == ["click-button", "click-button", "click-link", "click-link"]


def test_tasks_all_is_every_task_but_the_excluded_which_show_nothing_actionable(browser):  # noqa: F811
    from adapters.miniwob_env import EXCLUDED, MiniWoBEnv, list_tasks
    from jitrl_cli.runs.session import miniwob_tasks

    names = miniwob_tasks(["all"])
    assert set(names) == set(list_tasks()) - set(EXCLUDED) and len(names) >= 120
    for task in ("click-color", "tic-tac-toe"):  # the reason holds: nothing to act on
        env = MiniWoBEnv(task, browser, seed=0)
        try:
            _, info = env.reset()
            assert info["candidates"] == []
        finally:
            env.close()


@pytest.mark.slow
def test_backoff_values_new_instances_elements_by_what_earlier_instances_did_to_their_kind(tmp_path):
    """click-widget names its elements with random words, so an action's key is new in every instance. With
    --backoff-actions a new instance's candidate is valued from the earlier instances' actions on the same kind of
    element (count > 0, no exploration bonus); without it, only from actions with its exact key."""
    rows = {}
    for flag in ("--backoff-actions", "--no-backoff-actions"):
        memory, logs = tmp_path / flag / "memory", tmp_path / flag / "logs"
        result = run_cli("web", "--task", "click-widget", "-n", "4", "--seed", "0", "--json", "--memory", str(memory),
                         "--log-dir", str(logs), flag)
        assert result.returncode == 0, result.stderr
        with sqlite3.connect(memory / "memory.sqlite") as con:
            stored = con.execute("SELECT episode_id, action FROM steps ORDER BY id").fetchall()
        rows[flag] = [json.loads(line) for p in sorted(logs.glob("*.jsonl")) for line in p.read_text().splitlines()]
        for row in rows[flag]:
            before = {a for e, a in stored if e < row["episode"]}
            for c in row["candidates"]:
                if c["count"] > 0:
                    assert (backoff_key(c["key"]) in {backoff_key(a) for a in before} if c["backed_off"]
                            else c["key"] in before), (flag, row["episode"], c)
    backed = [c for r in rows["--backoff-actions"] for c in r["candidates"] if c["backed_off"]]
    assert backed and all(c["count"] > 0 and not c["bonus"] and c["q"] is not None for c in backed)
    assert not any(c["backed_off"] for r in rows["--no-backoff-actions"] for c in r["candidates"])
    assert sum(c["count"] > 0 for r in rows["--backoff-actions"] for c in r["candidates"]) > \
        sum(c["count"] > 0 for r in rows["--no-backoff-actions"] for c in r["candidates"])


@pytest.mark.slow
def test_an_untried_button_starts_below_the_winners_of_a_page_memory_solved(tmp_path):
    """`jitrl web`'s default --unseen-q pessimistic on real click-button pages: a candidate no neighbour took starts
    from Q̂ = min(V̂, 0), so where the neighbours mostly won (V̂ > 0) its advantage is −V̂ (plus the paper's bonus
    α/|N| where it drew one), and where they failed it is the paper's 0 (plus the bonus). `memory inspect` then
    shows that memory as the agent reads it: the page's own state key, and --backoff-actions."""
    memory, logs = tmp_path / "memory", tmp_path / "logs"
    result = run_cli("web", "--task", "click-button", "-n", "5", "--seed", "0", "--json", "--memory", str(memory),
                     "--log-dir", str(logs))
    assert result.returncode == 0, result.stderr
    assert all(json.loads(line)["params"]["unseen_q"] == "pessimistic" for line in result.stdout.splitlines())
    rows = [json.loads(line) for p in sorted(logs.glob("*.jsonl")) for line in p.read_text().splitlines()]
    checked = []
    for row in rows:
        if row["neighbours"] == 0:
            continue
        value = row["value"]
        for c in row["candidates"]:
            if c["count"] == 0:
                bonus = 1.0 / row["neighbours"] if c["bonus"] else 0.0
                assert c["raw_advantage"] == pytest.approx(min(value, 0.0) - value + bonus), (row["episode"], c)
                checked.append(value)
    assert any(v > 0 for v in checked)  # a page where the known actions won had an untried candidate

    # memory inspect reads a web page's state key as is and backs a new button off to what buttons did
    with sqlite3.connect(memory / "memory.sqlite") as con:
        key = con.execute("SELECT state_key FROM steps ORDER BY id DESC LIMIT 1").fetchone()[0]
    shown = run_cli("memory", "inspect", "--memory", str(memory), "--state", key, "--k", "10", "--q-estimate", "mean",
                    "--backoff-actions", "--action", 'click button "Zork"', "--json")
    assert shown.returncode == 0, shown.stderr
    out = json.loads(shown.stdout)
    assert out["neighbours"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    buttons = [n["return"] for n in out["neighbours"] if backoff_key(n["action"].lower()) == "click button"]
    zork = {a["action"]: a for a in out["actions"]}['click button "zork"']
    assert buttons and zork["backed_off"] and zork["count"] == len(buttons)
    assert zork["q"] == pytest.approx(sum(buttons) / len(buttons))
