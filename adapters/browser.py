"""Headless Chromium through Playwright, with an origin allow-list.

Playwright's own browser download is never required: the executable is, in order,
``--chromium PATH`` / ``$JITRL_CHROMIUM``, Playwright's bundled Chromium if it is
installed, then Debian's ``/usr/bin/chromium`` (``apt-get install chromium``) or any
``chromium``/``chromium-browser``/``google-chrome`` on ``PATH``.

Only the task's own origins may be reached (a ``file://`` directory for MiniWoB, the configured
site origins for WebArena), enforced twice for every context of :meth:`Browser.new_context`:

1. below the page (:mod:`adapters.egress`): the context's proxy is a local
   :class:`~adapters.egress.RefusingProxy` and only the allowed ``host:port`` endpoints bypass it,
   so Chromium itself never connects to anything else: redirects, workers, WebRTC and
   preconnects included. The browser's own traffic goes to a refusing proxy as well;
2. in the page (:class:`OriginGuard`, ``context.route("**/*")``): requests the page starts,
   ``file://`` ones included, are checked by origin/directory and aborted before they start.

Every refusal of either layer is appended to the guard's ``blocked`` list.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from adapters.base import AdapterError
from adapters.egress import WEBRTC_ARGS, RefusingProxy, bypass_rules

CHROMIUM_ENV = "JITRL_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", *WEBRTC_ARGS,
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
    """``scheme://host[:port]`` of an http(s) URL, as browsers serialise an origin (``""`` for other schemes).

    Lower case, without ``user:password@`` and without the scheme's default port, so that a site
    configured as ``http://h:80/`` matches the ``http://h/...`` URLs Chromium requests.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = parts.port
    except ValueError:
        return ""
    default = 80 if parts.scheme == "http" else 443
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


@dataclass
class OriginGuard:
    """The allow-list: which request URLs may be loaded.

    Attributes:
        origins: allowed ``scheme://host[:port]`` origins (http/https).
        file_dirs: allowed local directories (``file://`` URLs under them).
        blocked: the refused requests, in order (their count is ``len(blocked)``): URLs aborted by
            the route or refused by the context's proxy, ``"CONNECT host:port"`` for refused tunnels,
            and redirects to a refused origin that the browser failed before either saw them.
            Appended to from the proxy's threads too, always under the lock (:meth:`record`, :meth:`failed`).
    """

    origins: set[str] = field(default_factory=set)
    file_dirs: list[Path] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def record(self, what: str) -> None:
        """Append a refused request to :attr:`blocked` (thread-safe)."""
        with self._lock:
            self.blocked.append(what)

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
            self.record(url)
            route.abort("blockedbyclient")

    def failed(self, request: Any) -> None:
        """Playwright ``requestfailed`` handler: record a redirect to a refused origin that failed before
        :meth:`handle` or the proxy saw it (Chromium 150 fails a form POST's 307 redirect so, with
        ``net::ERR_INVALID_ARGUMENT``), unless that URL is already recorded."""
        url = request.url
        if request.redirected_from is not None and not self.allows(url):
            with self._lock:
                if url not in self.blocked:
                    self.blocked.append(url)


class Browser:
    """A running headless Chromium (one Playwright instance, one browser process).

    The browser-wide proxy is a :class:`~adapters.egress.RefusingProxy` (its refusals, e.g. Chromium's
    own background requests, are in :attr:`blocked`); each context of :meth:`new_context` has its own.

    Args:
        chromium: executable path (``--chromium``); see :func:`find_chromium` for the default.

    Raises:
        AdapterError: when no browser is found, it fails to start, or no loopback port is free.
    """

    def __init__(self, chromium: str | os.PathLike | None = None) -> None:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright

        self.blocked: list[str] = []
        self._blocked_lock = threading.Lock()
        self._proxies: set[RefusingProxy] = set()
        self._pw: Any = None
        self._proxy = self._start_proxy(self._record)
        exe = None
        try:
            self._pw = sync_playwright().start()
            exe = find_chromium(chromium, self._pw)
            self.browser = self._pw.chromium.launch(
                headless=True, executable_path=exe, args=CHROMIUM_ARGS,
                proxy={"server": self._proxy.server, "bypass": "<-loopback>"},
            )
        except AdapterError:
            self._stop()
            raise
        except PlaywrightError as exc:
            self._stop()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AdapterError(f"cannot start Chromium ({exe or 'bundled'}): {first}; try `apt-get install chromium`") from None
        except BaseException:
            self._stop()
            raise
        self.executable = exe or self._pw.chromium.executable_path

    def _record(self, what: str) -> None:
        with self._blocked_lock:
            self.blocked.append(what)

    def _start_proxy(self, record: Any) -> RefusingProxy:
        try:
            proxy = RefusingProxy(record)
        except OSError as exc:
            raise AdapterError(f"cannot start the browser's egress proxy on 127.0.0.1: {exc.strerror or exc}") from None
        self._proxies.add(proxy)
        return proxy

    def _close_proxy(self, proxy: RefusingProxy) -> None:
        proxy.close()
        self._proxies.discard(proxy)

    def new_context(self, guard: OriginGuard, **kwargs: Any) -> Any:
        """A new browser context that may reach only ``guard``'s origins/directories.

        Below the page, the context's proxy is a new :class:`~adapters.egress.RefusingProxy` that
        records into ``guard.blocked`` and stops when the context closes; only the endpoints of
        ``guard.origins`` bypass it. In the page, every request passes through ``guard.handle``
        and WebSockets to other origins are closed. Service workers are blocked.

        ``kwargs`` go to Playwright's ``browser.new_context`` (viewport, record_har_path, ...).

        Raises:
            ValueError: ``kwargs`` sets ``proxy`` (the egress proxy is not replaceable), or an
                origin of ``guard`` is not http(s).
            AdapterError: no loopback port is free for the proxy.
        """
        if "proxy" in kwargs:
            raise ValueError("new_context sets the context's proxy itself (the egress allow-list)")
        bypass = bypass_rules(guard.origins)
        proxy = self._start_proxy(guard.record)
        try:
            context = self.browser.new_context(service_workers="block", proxy={"server": proxy.server, "bypass": bypass},
                                               **kwargs)
        except BaseException:
            self._close_proxy(proxy)
            raise
        context.on("close", lambda _: self._close_proxy(proxy))
        context.route("**/*", guard.handle)
        context.on("requestfailed", guard.failed)
        if hasattr(context, "route_web_socket"):
            def ws_handler(ws: Any) -> None:
                if guard.allows(ws.url.replace("ws", "http", 1)):
                    ws.connect_to_server()
                else:
                    guard.record(ws.url)
                    ws.close()

            context.route_web_socket("**/*", ws_handler)
        return context

    def _stop(self) -> None:
        try:
            if self._pw is not None:
                self._pw.stop()
        finally:
            self._pw = None
            for proxy in list(self._proxies):
                self._close_proxy(proxy)

    def close(self) -> None:
        """Stop the browser, Playwright and every egress proxy (idempotent)."""
        if self._pw is None:
            return
        try:
            self.browser.close()
        finally:
            self._stop()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
