"""Egress control below the page: Chromium's own proxy settings, and a local proxy that refuses.

Playwright's ``route()`` only sees the requests a page starts: it misses redirects (302/307,
microsoft/playwright#3993), a ``SharedWorker``'s fetches, and WebRTC, and Chromium preconnects
to a host before the route aborts the request. So the allow-list is also enforced in Chromium's
network stack, per browser context:

* the context's proxy is a :class:`RefusingProxy` on a free ``127.0.0.1`` port;
* its proxy bypass list (:func:`bypass_rules`) names the allowed ``host:port`` endpoints: only
  these are reached directly. ``<-loopback>`` comes first, so every other loopback port goes to
  the proxy too (Chromium bypasses proxies for loopback by default);
* the proxy answers every request (``GET http://…``, ``CONNECT host:port``, any method) with
  ``403`` and records it in the guard's blocked list. It forwards nothing and resolves no name,
  so a non-allowed host is never resolved or contacted, whatever path the request took;
* WebRTC may only use UDP through a proxy (:data:`WEBRTC_ARGS`, a browser switch): with an HTTP
  proxy that means no UDP at all, and TURN/ICE over TCP goes to the refusing proxy.

Why not a proxy library (e.g. ``proxy.py``): nothing is forwarded, so no proxying code is needed,
only an endpoint that reads a request and refuses it. The standard library's ``http.server``
parses the request; ``proxy.py`` would run its acceptors in forked processes (the refusals would
then have to be counted across processes, and Playwright's driver pipes would be inherited).
The allowed traffic never passes through this module: Chromium connects to it directly.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

#: Chromium switches: WebRTC sends UDP only through a UDP-capable proxy (an HTTP proxy is not one).
#: Chromium reads ``--webrtc-ip-handling-policy``; older builds read the ``force-`` name.
WEBRTC_ARGS = [
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
]
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_BODY = b"blocked by jitrl's origin allow-list\n"


def endpoint_of(origin: str) -> str:
    """The ``host:port`` that an http(s) origin connects to, port always explicit, e.g. ``localhost:80``.

    IPv6 hosts keep their brackets (``[::1]:8080``).

    Raises:
        ValueError: not an http(s)/ws(s) origin with a host, or a bad port.
    """
    parts = urlsplit(origin)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an http(s) origin: {origin!r}")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port or _DEFAULT_PORTS[parts.scheme]}"


def bypass_rules(origins: Iterable[str]) -> str:
    """Chromium's proxy bypass list for a context: ``<-loopback>`` then each allowed ``host:port``.

    Args:
        origins: allowed ``scheme://host[:port]`` origins (see :func:`endpoint_of`); ``""`` (what
            :func:`adapters.browser.origin_of` gives for other schemes) allows nothing.

    Returns:
        a comma-separated list, e.g. ``"<-loopback>,127.0.0.1:8080"``; ``"<-loopback>"`` alone
        when nothing is allowed (MiniWoB: every http/ws request goes to the proxy). A rule names
        a socket address, not a scheme, so ``http``, ``https`` and ``ws`` to an allowed ``host:port``
        all connect directly; the route guard still checks the scheme.

    Raises:
        ValueError: an origin that is not http(s).
    """
    return ",".join(["<-loopback>", *sorted({endpoint_of(o) for o in origins if o})])


class _Refuse(http.server.BaseHTTPRequestHandler):
    """Answers every request with 403 and records it (``server.record``)."""

    protocol_version = "HTTP/1.1"
    timeout = 10  # s: a preconnected socket that never sends a request is dropped after this
    server: "_Server"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # every method, including CONNECT and made-up ones
            return self._refuse
        raise AttributeError(name)

    def _refuse(self) -> None:
        self.server.record(f"CONNECT {self.path}" if self.command == "CONNECT" else self.path)
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) <= 1 << 20:
            self.rfile.read(int(length))  # read a small body, so the client sees the 403, not a reset
        self.close_connection = True
        self.send_response(403, "Forbidden by allow-list")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(_BODY)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(_BODY)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass  # stdout/stderr belong to `jitrl web` (--json)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a connection left open by Chromium never blocks shutdown
    record: Callable[[str], None]


class RefusingProxy:
    """An HTTP proxy endpoint on ``127.0.0.1`` that refuses every request with 403 and records it.

    It starts on a free port at construction, serves from one daemon thread (plus one per open
    connection), and stops with :meth:`close` (idempotent; also a context manager). Runs in
    parallel never conflict: each proxy has its own port.

    Args:
        record: called with each refused request, from the proxy's threads: the absolute URL for
            plain HTTP (``http://host:port/path``), ``"CONNECT host:port"`` for a tunnel (https,
            ws/wss, WebRTC over TCP). It must be thread-safe.

    Attributes:
        server: the proxy URL for Chromium/Playwright, ``http://127.0.0.1:PORT``.

    Raises:
        OSError: no loopback port could be bound.
    """

    def __init__(self, record: Callable[[str], None]) -> None:
        self._server = _Server(("127.0.0.1", 0), _Refuse)
        self._server.record = record
        self.server = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"jitrl-egress-{self._server.server_address[1]}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and free the port (waits at most ~0.1 s; idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "RefusingProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
