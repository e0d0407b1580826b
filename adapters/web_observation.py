"""Web pages as text for the agent: the accessibility tree, candidate actions, and the action grammar.

Observation (one string)::

    goal: Click on the "Next" button.
    url: miniwob/click-button.html
    error: <the last action's error, when it failed>
    [1] button "Next"
    [2] textbox
    [3] text "erat enim ipsum"

It comes from Playwright's accessibility snapshot (``aria_snapshot(mode="ai")``); each node that
has an aria ref gets a small integer id, stable for the element's lifetime within an episode
(:class:`ElementIds`). Actions name elements by that id and are executed through the ref
(``page.locator("aria-ref=…")``).

The action grammar is closed (regular expressions; quoted strings are JSON strings, decoded with
``json.loads``; nothing is ever evaluated as code)::

    click [N]            click [N] "text"  (the element, or the text "text" inside it)   click [N] role
    type [N] "text"      select [N] "option"      check [N]      uncheck [N]
    press [N] "Enter|Tab|Escape|Backspace|ArrowDown|ArrowUp"
    scroll up|down       go back       stop "answer"
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

#: roles a user can click (besides any node shown with [cursor=pointer])
CLICKABLE = {
    "button", "link", "checkbox", "radio", "tab", "menuitem", "menuitemcheckbox", "menuitemradio", "option",
    "switch", "treeitem", "textbox", "searchbox", "spinbutton", "slider", "gridcell", "columnheader",
}
TYPEABLE = {"textbox", "searchbox", "spinbutton", "combobox"}
KEYS = ("Enter", "Tab", "Escape", "Backspace", "ArrowDown", "ArrowUp")
MAX_TEXT = 500
ACTION_TIMEOUT_MS = 2000

_QUOTED = r'"(?:[^"\\\x00-\x1f]|\\.){0,%d}"' % MAX_TEXT
_GRAMMAR = [
    ("click", re.compile(rf"click \[(\d{{1,6}})\](?: ({_QUOTED}|[a-z]+))?")),
    ("type", re.compile(rf"type \[(\d{{1,6}})\] ({_QUOTED})")),
    ("select", re.compile(rf"select \[(\d{{1,6}})\] ({_QUOTED})")),
    ("check", re.compile(rf"check \[(\d{{1,6}})\](?: ({_QUOTED}|[a-z]+))?")),
    ("uncheck", re.compile(rf"uncheck \[(\d{{1,6}})\](?: ({_QUOTED}|[a-z]+))?")),
    ("press", re.compile(rf"press \[(\d{{1,6}})\] \"({'|'.join(KEYS)})\"")),
    ("scroll", re.compile(r"scroll (up|down)")),
    ("go back", re.compile(r"go back")),
    ("stop", re.compile(rf"stop ({_QUOTED})")),
]
_NODE = re.compile(r'^(?P<role>[A-Za-z/][\w/-]*)(?: "(?P<name>(?:[^"\\]|\\.)*)")?(?P<attrs>(?: \[[^\]]*\])*)$')
_ATTR = re.compile(r"\[([\w-]+)(?:=([^\]]*))?\]")
_GOAL_QUOTED = re.compile(r'"([^"]{1,80})"')
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)*\b")
_STOP = set("a an the and or to of in on into from with by for at is are be this that click select enter type press "
            "submit button field text box textbox then it its as all any your you on off".split())


class ActionError(ValueError):
    """An action string outside the grammar (the message says why; one line)."""


@dataclass(frozen=True)
class Action:
    """A parsed action.

    Attributes:
        kind: click, type, select, check, uncheck, press, scroll, go back or stop.
        element: the element id ``[N]`` (None for scroll, go back, stop).
        text: the quoted argument (typed text, option, key, answer, or click target text); None if absent.
        direction: ``up``/``down`` for scroll.
    """

    kind: str
    element: int | None = None
    text: str | None = None
    direction: str | None = None


def _unquote(token: str | None) -> str | None:
    if token is None or not token.startswith('"'):
        return None
    try:
        value = json.loads(token)
    except json.JSONDecodeError:
        raise ActionError(f"bad quoted string {token[:40]}") from None
    if not isinstance(value, str):
        raise ActionError("quoted argument is not a string")
    return value


def parse_action(text: str) -> Action:
    """Parse one action string of the closed grammar (module docstring).

    Raises:
        ActionError: when the string is not a complete sentence of the grammar.
    """
    s = text.strip()
    if not s or "\n" in s or "\r" in s:
        raise ActionError("empty or multi-line action")
    for kind, pattern in _GRAMMAR:
        m = pattern.fullmatch(s)
        if not m:
            continue
        if kind == "scroll":
            return Action("scroll", direction=m.group(1))
        if kind == "go back":
            return Action("go back")
        if kind == "stop":
            return Action("stop", text=_unquote(m.group(1)))
        if kind == "press":
            return Action("press", element=int(m.group(1)), text=m.group(2))
        return Action(kind, element=int(m.group(1)), text=_unquote(m.group(2)))
    raise ActionError(f"not an action: {s[:60]!r}")


def quote(text: str) -> str:
    """A JSON string literal (what :func:`parse_action` decodes)."""
    return json.dumps(text, ensure_ascii=False)


def format_action(action: Action, label: str | None = None) -> str:
    """The action string for an :class:`Action` (``label``: a role word shown after a bare click)."""
    k, e = action.kind, action.element
    if k == "scroll":
        return f"scroll {action.direction}"
    if k == "go back":
        return "go back"
    if k == "stop":
        return f"stop {quote(action.text or '')}"
    tail = f" {quote(action.text)}" if action.text is not None else (f" {label}" if label else "")
    return f"{k} [{e}]{tail}"


# -- the tree ---------------------------------------------------------------------------------
@dataclass
class Node:
    """One accessibility node: role, name, inline text/value, states, aria ref, children."""

    role: str
    name: str = ""
    text: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    ref: str | None = None
    url: str | None = None
    children: list["Node"] = field(default_factory=list)
    id: int | None = None

    @property
    def clickable(self) -> bool:
        return self.ref is not None and (self.role in CLICKABLE or self.attrs.get("cursor") == "pointer")

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


def _parse_key(key: str) -> Node:
    m = _NODE.match(key.strip())
    if not m:
        return Node(role="text", text=key.strip())
    attrs = {a: (v if v is not None else "") for a, v in _ATTR.findall(m.group("attrs") or "")}
    name = m.group("name") or ""
    try:
        name = json.loads(f'"{name}"')
    except json.JSONDecodeError:
        pass
    return Node(role=m.group("role"), name=name, attrs=attrs, ref=attrs.pop("ref", None))


def _build(items: Any) -> list[Node]:
    out: list[Node] = []
    for item in items or []:
        if isinstance(item, str):
            out.append(_parse_key(item))
        elif isinstance(item, dict):
            for key, value in item.items():
                key = str(key)
                if key.startswith("/"):  # a property such as /url of the parent
                    if out and key == "/url":
                        out[-1].url = str(value)
                    continue
                node = _parse_key(key)
                if node.role == "text" and not node.text:
                    node.text = "" if value is None else str(value)
                elif isinstance(value, list):
                    props = [v for v in value if isinstance(v, dict) and any(str(k).startswith("/") for k in v)]
                    for p in props:
                        if "/url" in p:
                            node.url = str(p["/url"])
                    node.children = _build([v for v in value if v not in props])
                elif value is not None:
                    node.text = str(value)
                out.append(node)
    return out


def parse_snapshot(snapshot: str) -> list[Node]:
    """Parse Playwright's ``aria_snapshot(mode="ai")`` YAML into a forest of :class:`Node`."""
    try:
        data = yaml.safe_load(snapshot)
    except yaml.YAMLError:
        return [Node(role="text", text=line.strip("- ")) for line in snapshot.splitlines()]
    return _build(data if isinstance(data, list) else [data])


class ElementIds:
    """Small integer ids for aria refs, stable within an episode (first seen, first numbered)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._by_ref: dict[str, int] = {}
        self.nodes: dict[int, Node] = {}

    def assign(self, roots: list[Node]) -> None:
        """Give every node with a ref its id; ``nodes`` then maps the current page's ids to nodes."""
        self.nodes = {}
        for root in roots:
            for node in root.walk():
                if node.ref is None:
                    continue
                node.id = self._by_ref.setdefault(node.ref, len(self._by_ref) + 1)
                self.nodes[node.id] = node


def _describe(node: Node) -> str:
    parts = [f"[{node.id}] " if node.id is not None and (node.clickable or node.text or node.role in TYPEABLE) else ""]
    role = "text" if node.role in ("generic", "paragraph") and node.text else node.role
    parts.append(role)
    if node.name:
        parts.append(f" {quote(node.name)}")
    for a, v in node.attrs.items():
        if a in ("cursor",):
            continue
        parts.append(f" [{a}={v}]" if v else f" [{a}]")
    if node.text:
        parts.append(f" {quote(node.text[:200])}" if role == "text" and not node.name else f": {quote(node.text[:200])}")
    return "".join(parts)


def render_tree(roots: list[Node], max_lines: int = 150) -> str:
    """Compact text of the tree: one line per meaningful node, indented by meaningful depth.

    Structure-only nodes (a generic without name or text) are dropped; their children move up.
    """
    lines: list[str] = []

    def visit(node: Node, depth: int) -> None:
        if len(lines) >= max_lines:
            return
        empty = node.role in ("generic", "group", "none", "presentation") and not node.name and not node.text
        if not empty:
            lines.append(" " * depth + _describe(node))
        for c in node.children:
            visit(c, depth if empty else depth + 1)

    for r in roots:
        visit(r, 0)
    return "\n".join(lines)


def short_url(url: str) -> str:
    """The URL as shown: MiniWoB's file:// paths shortened to ``miniwob/<task>.html``."""
    m = re.search(r"/html/(miniwob/[^/?#]+)$", url)
    return m.group(1) if m and url.startswith("file://") else url


def render_observation(goal: str, url: str, roots: list[Node], error: str | None = None) -> str:
    """The observation string shown to the model (module docstring)."""
    head = [f"goal: {goal}", f"url: {short_url(url)}"]
    if error:
        head.append(f"error: {error}")
    return "\n".join(head) + "\n" + render_tree(roots)


# -- goal texts, state key ------------------------------------------------------------------
def goal_texts(goal: str, limit: int = 4) -> list[str]:
    """Texts worth typing: the goal's quoted strings, else its unusual words (digits, inner capitals)."""
    quoted = list(dict.fromkeys(_GOAL_QUOTED.findall(goal)))
    if quoted:
        return quoted[:limit]
    words = [w.strip(".,:;!?()'") for w in goal.split()[1:]]
    odd = [w for w in words if w and w.lower() not in _STOP and (any(c.isdigit() for c in w) or any(c.isupper() for c in w))]
    return list(dict.fromkeys(odd))[:limit]


def goal_template(goal: str) -> str:
    """The goal with quoted values and numbers masked: ``click on the "#" button.``"""
    return _NUMBER.sub("#", _GOAL_QUOTED.sub('"#"', goal)).lower()


def goal_values(goal: str, roots: list[Node]) -> set[str]:
    """What keys mask as ``#goal`` on this page, lower case: the goal's texts (:func:`goal_texts`) and the names of
    the page's elements that the goal mentions as a whole word or phrase (``Select fzzqo, NYYyS82 and click
    Submit.``: the checkboxes ``fzzqo`` and ``NYYyS82``; not common words such as ``Submit``, which stay as they are).

    Args:
        goal: the task's goal.
        roots: the page's tree.
    """
    values = {t.lower() for t in goal_texts(goal)}
    low = goal.lower()
    for root in roots:
        for n in root.walk():
            name = n.name.strip().lower()
            if (name and name not in values and name not in _STOP and any(c.isalnum() for c in name)
                    and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", low)):
                values.add(name)
    return values


def mask_goal(template: str, values: set[str]) -> str:
    """A goal template (lower case) with each of ``values`` (:func:`goal_values`) that it mentions as a whole word
    masked as ``#``, longest first."""
    for value in sorted(values, key=len, reverse=True):
        template = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", "#", template)
    return template


def mask_url(url: str) -> str:
    """URL with numeric ids and long hex/uuid segments masked (query kept only by key)."""
    u = short_url(url).split("#")[0]
    base, _, query = u.partition("?")
    base = re.sub(r"/[0-9a-f]{12,}|/\d+", "/#", base)
    keys = "&".join(sorted(p.split("=")[0] for p in query.split("&") if p))
    return base + (f"?{keys}" if keys else "")


def masked_role(role: str, wanted: set[str]) -> str:
    """An element's role as keys show it: ``#goal`` where the goal names the role itself (``Click on a "checkbox"
    widget.``: the checkbox is what the goal asks for, whichever instance), else the role.

    Args:
        role: the element's ARIA role (``checkbox``).
        wanted: what the goal names, lower case (:func:`goal_values`).
    """
    return "#goal" if role.lower() in wanted else role


ELEMENT_STATES = ("checked", "selected", "expanded", "disabled")


def element_state(node: Node) -> str:
    """The element's toggle states as the keys show them: ``[checked]``, ``[selected][expanded]``, or ``""``."""
    return "".join(f"[{a}]" for a in ELEMENT_STATES if a in node.attrs)


def state_key(goal: str, url: str, roots: list[Node], max_elements: int = 30, values: set[str] | None = None) -> str:
    """The memory's state key: goal template | masked URL | focused element | interactive elements.

    Element names the goal names (:func:`goal_values`) are masked as ``"#goal"`` in the elements (same state across
    instances) and as ``#`` in the goal, and so are roles (:func:`masked_role`); filled text fields show
    ``=filled``, checked/selected states are kept. ``values``: :func:`goal_values`, where the caller has them.
    """
    wanted = goal_values(goal, roots) if values is None else values
    focus = "none"
    elems: list[str] = []
    for root in roots:
        for n in root.walk():
            if "active" in n.attrs and n.ref:
                focus = n.role
            if not n.clickable and n.role not in TYPEABLE:
                continue
            name = '"#goal"' if n.name.lower() in wanted else (quote(n.name[:30]) if n.name else "")
            state = element_state(n)
            filled = "=filled" if n.role in TYPEABLE and n.text else ""
            elems.append(f"{masked_role(n.role, wanted)}{' ' + name if name else ''}{state}{filled}")
    return f"goal: {mask_goal(goal_template(goal), wanted)} | url: {mask_url(url)} | focus: {focus} | {'; '.join(elems[:max_elements])}"


# -- candidates ---------------------------------------------------------------------------
def enumerate_candidates(
    goal: str,
    roots: list[Node],
    *,
    can_scroll: bool = False,
    can_go_back: bool = False,
    stop_answers: list[str] | None = None,
    max_candidates: int = 40,
) -> list[str]:
    """Candidate action strings for the current page (deduplicated, at most ``max_candidates``).

    Clicks on every clickable element, typing of goal texts into text fields, every option of a
    select, clicks on goal texts inside text blocks, then scroll / go back / stop when allowed.
    """
    texts = goal_texts(goal)
    lowered = [(t, t.lower()) for t in texts]
    out: list[str] = []
    for root in roots:
        for n in root.walk():
            if n.id is None:
                continue
            if n.role == "combobox" and any(c.role == "option" for c in n.children):
                out.extend(format_action(Action("select", n.id, c.name)) for c in n.children if c.role == "option" and c.name)
                continue
            if n.clickable:
                out.append(format_action(Action("click", n.id, n.name or None), label=None if n.name else n.role))
            if n.role in TYPEABLE:
                out.extend(format_action(Action("type", n.id, t)) for t in texts if t != n.text)
            elif not n.clickable and n.text:
                out.extend(format_action(Action("click", n.id, t)) for t, low in lowered
                           if low in n.text.lower() and low != n.text.lower())
                if any(low == n.text.lower() for _, low in lowered):
                    out.append(format_action(Action("click", n.id, n.text)))
    if can_scroll:
        out += ["scroll down", "scroll up"]
    if can_go_back:
        out.append("go back")
    out += [format_action(Action("stop", text=a)) for a in (stop_answers or [])]
    return list(dict.fromkeys(out))[:max_candidates]


def action_key(text: str, goal: str, roots: list[Node], values: set[str] | None = None) -> str:
    """What an action does, without what makes it this instance's: the memory's key for the action.

    The element id becomes the element's role and accessible name; a name or argument equal to one of the
    goal's texts or names of the page's elements that the goal mentions (:func:`goal_values`) becomes ``"#goal"``,
    as the state key masks them, and so does a role the goal names (:func:`masked_role`). The element's toggle
    states follow (:func:`element_state`): clicking a ticked box undoes what clicking it unticked did, so the two
    are different actions (``click checkbox "#goal"[checked]``). Elements that role, masked name and state do not
    tell apart get their position among such elements (``#2``, ``#3``: the first has none), so after the first
    goal box is ticked, the next unticked one is ``click checkbox "#goal"`` again. Actions without an element are
    their own key. Examples: ``click [7] "Submit"`` → ``click button "Submit"``; ``type [4] "Paris"`` with the
    goal ``Enter "Paris"`` → ``type textbox "#goal"``.

    Args:
        text: the concrete action string (:func:`enumerate_candidates`).
        goal: the task's goal.
        roots: the page's tree, element ids assigned (:class:`ElementIds`).
        values: :func:`goal_values` of ``goal`` and ``roots``, where the caller has them (computed otherwise).

    Returns:
        the key; ``text`` itself when it is not an action of the grammar or names no element on the page.
    """
    try:
        action = parse_action(text)
    except ActionError:
        return text
    if action.element is None:
        return text
    wanted = goal_values(goal, roots) if values is None else values

    def masked(value: str) -> str:
        return '"#goal"' if value.lower() in wanted else quote(value[:40])

    like: dict[str, int] = {}
    found = None
    for root in roots:
        for n in root.walk():
            if n.id is None:
                continue
            named = f"{masked_role(n.role, wanted)} {masked(n.name) if n.name else ''}".rstrip()
            ident = named + element_state(n)
            like[ident] = like.get(ident, 0) + 1
            if n.id == action.element:
                found = (ident, like[ident], named)
    if found is None:
        return text
    ident, position, named = found
    arg = f" {masked(action.text)}" if action.text is not None and action.kind != "click" else ""
    if action.kind == "click" and action.text is not None and not named.endswith(masked(action.text)):
        arg = f" {masked(action.text)}"  # a click on a text inside a block: which text matters
    return f"{action.kind} {ident}{arg}{f' #{position}' if position > 1 else ''}"


_QUOTED = re.compile(r' "(?:[^"\\]|\\.)*"')
_POSITION = re.compile(r" #\d+$")


def backoff_key(key: str) -> str:
    """The coarser key an action's :func:`action_key` backs off to: without the names that are not goal values and
    without the position among like elements, i.e. what the action does to which kind of element.

    ``click checkbox "Hh8"`` → ``click checkbox``; ``click checkbox "Hh8"[checked]`` → ``click checkbox[checked]``;
    ``click checkbox "#goal"`` → itself; ``type textbox "#goal" #2``
    → ``type textbox "#goal"``; ``click button "Submit"`` → ``click button``. An instance's own names (random
    words in most MiniWoB++ tasks) never repeat, so their exact keys are new in every instance; the back-off key
    is what repeats (:func:`jitrl_cli.core.advantage.estimate_advantages`, ``backoff``).

    Args:
        key: an action key (any string; one that is not a key comes back with the same removals applied).
    """
    return _POSITION.sub("", _QUOTED.sub(lambda m: m.group(0) if m.group(0) == ' "#goal"' else "", key))


def short_texts(roots: list[Node], limit: int = 5, max_len: int = 40) -> list[str]:
    """Short non-interactive texts of the page (answer candidates for retrieval tasks)."""
    found = [n.text.strip() for r in roots for n in r.walk() if n.text and not n.clickable and 0 < len(n.text.strip()) <= max_len]
    return list(dict.fromkeys(found))[:limit]


# -- execution ----------------------------------------------------------------------------
def execute(page: Any, action: Action, ids: ElementIds, timeout_ms: int = ACTION_TIMEOUT_MS) -> str | None:
    """Perform an action with Playwright calls.

    Returns:
        None on success, else a one-line error for the next observation (unknown element,
        element not actionable, timeout). ``stop`` does nothing here (the environment ends the episode).
    """
    from playwright.sync_api import Error as PlaywrightError

    try:
        if action.kind == "scroll":
            page.mouse.wheel(0, 400 if action.direction == "down" else -400)
            return None
        if action.kind == "go back":
            page.go_back(timeout=timeout_ms * 5)
            return None
        if action.kind == "stop":
            return None
        node = ids.nodes.get(action.element or -1)
        if node is None or node.ref is None:
            return f"no element [{action.element}] on this page"
        loc = page.locator(f"aria-ref={node.ref}")
        if action.kind == "click":
            target = loc
            if action.text and not node.clickable and action.text != node.name:
                inner = loc.get_by_text(action.text, exact=True)
                target = inner.first if inner.count() else loc
            target.click(timeout=timeout_ms)
        elif action.kind == "type":
            loc.fill(action.text or "", timeout=timeout_ms)
        elif action.kind == "select":
            loc.select_option(label=action.text, timeout=timeout_ms)
        elif action.kind == "check":
            loc.check(timeout=timeout_ms)
        elif action.kind == "uncheck":
            loc.uncheck(timeout=timeout_ms)
        elif action.kind == "press":
            loc.press(action.text or "Enter", timeout=timeout_ms)
        else:  # pragma: no cover - parse_action never produces other kinds
            return f"unsupported action {action.kind}"
    except PlaywrightError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"{action.kind} [{action.element}] failed: {first[:160]}"
    return None


def take_snapshot(page: Any, ids: ElementIds, selector: str = "body") -> list[Node]:
    """Snapshot the page's accessibility tree under ``selector`` and number its elements."""
    roots = parse_snapshot(page.locator(selector).aria_snapshot(mode="ai", timeout=5000))
    ids.assign(roots)
    return roots
