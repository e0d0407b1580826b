"""Headless Chromium through Playwright, with an origin allow-list.

Playwright's own browser download is never required: the executable is, in order,
``--chromium PATH`` / ``$JITRL_CHROMIUM``, Playwright's bundled Chromium if it is
installed, then Debian's ``/usr/bin/chromium`` (``apt-get install chromium``) or any
``chromium``/``chromium-browser``/``google-chrome`` on ``PATH``.

Every request of a context goes through :class:`OriginGuard` (``context.route("**/*")``):
only the task's own origins are allowed (a ``file://`` directory for MiniWoB, the
configured site origins for WebArena); everything else is aborted and counted.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from adapters.base import AdapterError

CHROMIUM_ENV = "JITRL_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
#: schemes that never leave the page (no network, no file system)
_LOCAL_SCHEMES = ("data:", "blob:", "about:")


def find_chromium(explicit: str | os.PathLike | None = None, playwright: Any = None) -> str | None:
    """Path of the Chromium executable to launch, or None when Playwright's bundled one should be used.

    Args:
        explicit: ``--chromium PATH`` (wins over everything).
        playwright: a started ``sync_playwright()`` object, to check for Playwright's own browser.

    Raises:
        AdapterError: when an explicitly requested path (option or ``$JITRL_CHROMIUM``) does not
            exist, or no browser is found at all.
    """
    chosen = explicit or os.environ.get(CHROMIUM_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise AdapterError(f"Chromium not found at {path} (from --chromium or ${CHROMIUM_ENV})")
        return str(path)
    if playwright is not None:
        try:
            if Path(playwright.chromium.executable_path).is_file():
                return None
        except Exception:  # noqa: BLE001 - Playwright raises when its registry is incomplete
            pass
    if Path(DEFAULT_CHROMIUM).is_file():
        return DEFAULT_CHROMIUM
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise AdapterError(
        f"no Chromium browser found: install it with `apt-get install chromium`, or pass --chromium PATH / set ${CHROMIUM_ENV}"
    )


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an http(s) URL, lower case (``""`` for other schemes)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return ""
    return f"{parts.scheme}://{parts.netloc.lower()}"


@dataclass
class OriginGuard:
    """The allow-list: which request URLs may be loaded.

    Attributes:
        origins: allowed ``scheme://host[:port]`` origins (http/https).
        file_dirs: allowed local directories (``file://`` URLs under them).
        blocked: URLs of the aborted requests, in order (their count is ``len(blocked)``).
    """

    origins: set[str] = field(default_factory=set)
    file_dirs: list[Path] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def allows(self, url: str) -> bool:
        """True when ``url`` belongs to an allowed origin or directory."""
        if url.startswith(_LOCAL_SCHEMES):
            return True
        if url.startswith("file://"):
            from urllib.request import url2pathname

            try:
                path = Path(url2pathname(urlsplit(url).path)).resolve()
            except (OSError, ValueError):
                return False
            return any(path == d or d in path.parents for d in self.file_dirs)
        origin = origin_of(url)
        return bool(origin) and origin in self.origins

    def handle(self, route: Any) -> None:
        """Playwright route handler: continue allowed requests, abort (and record) the rest."""
        url = route.request.url
        if self.allows(url):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")


class Browser:
    """A running headless Chromium (one Playwright instance, one browser process).

    Args:
        chromium: executable path (``--chromium``); see :func:`find_chromium` for the default.

    Raises:
        AdapterError: when no browser is found or it fails to start.
    """

    def __init__(self, chromium: str | os.PathLike | None = None) -> None:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        try:
            exe = find_chromium(chromium, self._pw)
            self.browser = self._pw.chromium.launch(headless=True, executable_path=exe, args=CHROMIUM_ARGS)
        except AdapterError:
            self._pw.stop()
            raise
        except PlaywrightError as exc:
            self._pw.stop()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AdapterError(f"cannot start Chromium ({exe or 'bundled'}): {first}; try `apt-get install chromium`") from None
        self.executable = exe or self._pw.chromium.executable_path

    def new_context(self, guard: OriginGuard, **kwargs: Any) -> Any:
        """A new browser context whose every request passes through ``guard``.

        ``kwargs`` go to Playwright's ``browser.new_context`` (viewport, record_har_path, ...).
        WebSockets to origins outside the allow-list are closed as well.
        """
        context = self.browser.new_context(service_workers="block", **kwargs)
        context.route("**/*", guard.handle)
        if hasattr(context, "route_web_socket"):
            def ws_handler(ws: Any) -> None:
                if guard.allows(ws.url.replace("ws", "http", 1)):
                    ws.connect_to_server()
                else:
                    guard.blocked.append(ws.url)
                    ws.close()

            context.route_web_socket("**/*", ws_handler)
        return context

    def close(self) -> None:
        """Stop the browser and Playwright (idempotent)."""
        if self._pw is None:
            return
        try:
            self.browser.close()
        finally:
            self._pw.stop()
            self._pw = None

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
