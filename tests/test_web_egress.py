"""The web allow-list below the page (issue 19): real headless Chromium, two loopback origins.

An allowed site on one port of 127.0.0.1 tries every way out to an "outside" server on another
port (TCP and UDP on the same port number). The outside server must never receive a connection
or a datagram, and each refusal must be counted in the guard's ``blocked`` list.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest


# -- loopback servers (started by the tests) -------------------------------------------------------
@dataclass
class Outside:
    """A server on another loopback port that records every TCP connection and UDP datagram."""

    port: int
    events: list[tuple[str, bytes]] = field(default_factory=list)
    servers: list[Any] = field(default_factory=list)


def start_outside() -> Outside:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            outside.events.append(("tcp", b"connected"))  # at once: a preconnect may never send anything
            self.request.settimeout(1)
            try:
                outside.events.append(("tcp", self.request.recv(256).split(b"\r\n")[0]))
            except OSError:
                pass
            try:
                self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\noutside")
            except OSError:
                pass

    for _ in range(20):  # the UDP port of the same number may be taken: try another pair
        tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        tcp.daemon_threads = True
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", tcp.server_address[1]))
            break
        except OSError:
            udp.close()
            tcp.server_close()
    outside = Outside(tcp.server_address[1], servers=[tcp, udp])

    def receive() -> None:
        while True:
            try:
                data, _ = udp.recvfrom(4096)
            except OSError:
                return
            outside.events.append(("udp", data[:32]))

    threading.Thread(target=tcp.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    threading.Thread(target=receive, daemon=True).start()
    return outside


def stop_outside(outside: Outside) -> None:
    tcp, udp = outside.servers
    tcp.shutdown()
    tcp.server_close()
    udp.close()


@dataclass
class Site:
    """An HTTP server on 127.0.0.1 serving ``pages`` (path -> (status, headers, body)); records requests."""

    port: int
    pages: dict[str, tuple[int, dict[str, str], str]]
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (method, path, headers)
    server: Any = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_site(pages: dict[str, tuple[int, dict[str, str], str]]) -> Site:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            site.requests.append((self.command, self.path, dict(self.headers)))
            status, headers, body = site.pages.get(self.path.split("?")[0], (404, {}, "not found"))
            data = body.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if "Content-Type" not in headers:
                self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_HEAD = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    site = Site(server.server_address[1], pages, server=server)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return site


def stop_site(site: Site) -> None:
    site.server.shutdown()
    site.server.server_close()


def page(body: str) -> tuple[int, dict[str, str], str]:
    return 200, {}, f"<!doctype html><html><body>{body}</body></html>"


def escape_pages(out: str) -> dict[str, tuple[int, dict[str, str], str]]:
    """The allowed site's pages; ``out`` is the outside origin (``http://127.0.0.1:PORT``)."""
    host_port = out.removeprefix("http://")
    ice = (f"[{{urls: 'stun:{host_port}'}}, {{urls: 'turn:{host_port}?transport=tcp', username: 'u', credential: 'p'}},"
           f" {{urls: 'turn:{host_port}?transport=udp', username: 'u', credential: 'p'}}]")
    return {
        "/ok": page("<img src='/pixel'><script>fetch('/data').then(r => r.text()).then(t => document.title = t)</script>"),
        "/pixel": (200, {"Content-Type": "image/svg+xml"}, "<svg xmlns='http://www.w3.org/2000/svg'/>"),
        "/data": (200, {"Content-Type": "text/plain"}, "allowed"),
        "/r302": (302, {"Location": f"{out}/r302"}, ""),
        "/r307": (307, {"Location": f"{out}/r307"}, ""),
        "/r302s": (302, {"Location": f"https://{host_port}/tls"}, ""),
        "/r302img": (302, {"Location": f"{out}/r302img.png"}, ""),
        "/img-redirect": page("<img src='/r302img'>"),
        "/fetch-redirect": page("<script>fetch('/r302').catch(() => 0)</script>"),
        "/form-307": page("<form method=post action='/r307'><input name=a value=b></form>"
                          "<script>document.forms[0].submit()</script>"),
        "/shared": page("<script>new SharedWorker('/shared.js')</script>"),
        "/shared.js": (200, {"Content-Type": "text/javascript"}, f"fetch('{out}/sw').catch(() => 0)"),
        "/worker": page("<script>new Worker('/worker.js')</script>"),
        "/worker.js": (200, {"Content-Type": "text/javascript"}, f"fetch('{out}/dw').catch(() => 0)"),
        "/webrtc": page(f"""<script>
            const pc = new RTCPeerConnection({{iceServers: {ice}}});
            pc.createDataChannel('x');
            pc.onicecandidate = e => {{ if (!e.candidate) document.title = 'gathered'; }};
            pc.createOffer().then(o => pc.setLocalDescription(o));</script>"""),
        "/webrtc-peer": page(f"""<script>(async () => {{
            const a = new RTCPeerConnection(), b = new RTCPeerConnection();
            a.createDataChannel('x');
            const offer = await a.createOffer(); await a.setLocalDescription(offer); await b.setRemoteDescription(offer);
            const answer = await b.createAnswer(); await b.setLocalDescription(answer); await a.setRemoteDescription(answer);
            await a.addIceCandidate({{candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 {host_port.split(':')[1]} typ host', sdpMid: '0'}});
            await a.addIceCandidate({{candidate: 'candidate:2 1 tcp 1518280447 127.0.0.1 {host_port.split(':')[1]} typ host tcptype passive', sdpMid: '0'}});
            }})();</script>"""),
        "/iframe": page(f"<iframe src='{out}/iframe'></iframe>"),
        "/open": page(f"<script>window.open('{out}/open')</script>"),
        "/meta": (200, {}, f"<html><head><meta http-equiv='refresh' content='0;url={out}/meta'></head></html>"),
        "/form": page(f"<form method=post action='{out}/form'><input name=a value=b></form>"
                      "<script>document.forms[0].submit()</script>"),
        "/websocket": page(f"<script>new WebSocket('ws://{host_port}/ws')</script>"),
        "/beacon": page(f"<script>navigator.sendBeacon('{out}/beacon', 'x')</script>"),
        "/preconnect": page(f"<link rel=preconnect href='{out}'><link rel=dns-prefetch href='{out}'>"
                            f"<a href='{out}/link'>link</a>"),
    }


@pytest.fixture(scope="module")
def browser():
    from adapters.browser import Browser

    b = Browser()
    yield b
    b.close()


@pytest.fixture(scope="module")
def outside():
    out = start_outside()
    yield out
    stop_outside(out)


@pytest.fixture(scope="module")
def site(outside):
    s = start_site(escape_pages(f"http://127.0.0.1:{outside.port}"))
    yield s
    stop_site(s)


def wait_for(predicate, page, timeout_s: float = 5.0) -> bool:
    """Poll ``predicate()`` while the page runs; True once it holds, False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        page.wait_for_timeout(50)
    return predicate()


# -- every way out, each in its own context ----------------------------------------------------------
# (page on the allowed site, what the refusal records: a URL part or "CONNECT" for a tunnel)
PATHS = {
    "redirect-302": ("/r302", "/r302"),
    "redirect-307": ("/r307", "/r307"),
    "redirect-302-to-https": ("/r302s", "CONNECT 127.0.0.1:{port}"),
    "subresource-redirect": ("/img-redirect", "/r302img.png"),
    "fetch-redirect": ("/fetch-redirect", "/r302"),
    "form-post-307": ("/form-307", "/r307"),
    "shared-worker-fetch": ("/shared", "/sw"),
    "worker-fetch": ("/worker", "/dw"),
    "webrtc-stun-turn": ("/webrtc", "CONNECT 127.0.0.1:{port}"),
    "webrtc-remote-candidate": ("/webrtc-peer", "CONNECT 127.0.0.1:{port}"),
    "iframe": ("/iframe", "/iframe"),
    "window-open": ("/open", "/open"),
    "meta-refresh": ("/meta", "/meta"),
    "form-post": ("/form", "/form"),
    "websocket": ("/websocket", "ws://127.0.0.1:{port}/ws"),
    "beacon": ("/beacon", "/beacon"),
}


@pytest.mark.parametrize("name", list(PATHS))
def test_way_out_is_blocked_and_counted(name, browser, site, outside):
    from adapters.browser import OriginGuard

    path, expected = PATHS[name]
    expected = expected.format(port=outside.port)
    outside.events.clear()
    guard = OriginGuard(origins={site.origin})
    context = browser.new_context(guard)
    try:
        tab = context.new_page()
        try:
            tab.goto(site.origin + path, timeout=10000)
        except Exception:  # noqa: BLE001 - a refused navigation may fail the goto; the asserts below decide
            pass
        counted = wait_for(lambda: any(expected in b for b in guard.blocked) or outside.events, tab)
        tab.wait_for_timeout(300)  # anything still on its way out arrives now
    finally:
        context.close()
    assert outside.events == [], f"{name}: the outside server was reached: {outside.events}"
    assert counted and any(expected in b for b in guard.blocked), f"{name}: not counted: {guard.blocked}"
    assert all(str(outside.port) in b for b in guard.blocked), guard.blocked  # nothing allowed was refused


def test_preconnect_and_link_hints_do_not_connect(browser, site, outside):
    from adapters.browser import OriginGuard

    outside.events.clear()
    guard = OriginGuard(origins={site.origin})
    context = browser.new_context(guard)
    try:
        tab = context.new_page()
        tab.goto(site.origin + "/preconnect")
        tab.hover("a")  # hovering a link may preconnect too
        tab.wait_for_timeout(500)
    finally:
        context.close()
    assert outside.events == []


def test_allowed_origin_still_loads(browser, site):
    from adapters.browser import OriginGuard

    site.requests.clear()
    guard = OriginGuard(origins={site.origin})
    context = browser.new_context(guard)
    try:
        tab = context.new_page()
        response = tab.goto(site.origin + "/ok")
        assert response.status == 200
        tab.wait_for_function("() => document.title === 'allowed'", timeout=5000)
        assert tab.evaluate("() => document.images[0].complete && document.images[0].naturalWidth >= 0")
    finally:
        context.close()
    assert guard.blocked == []
    assert {p for _, p, _ in site.requests} >= {"/ok", "/pixel", "/data"}


def test_file_page_stays_confined(browser, outside, tmp_path):
    """MiniWoB's case: a file:// directory and no origins; http, other files and redirects are refused."""
    from adapters.browser import OriginGuard

    outside.events.clear()
    out = f"http://127.0.0.1:{outside.port}"
    (tmp_path / "secret.txt").write_text("secret")
    task = tmp_path / "task"
    task.mkdir()
    (task / "page.html").write_text(
        f"<iframe src='{out}/iframe'></iframe><img src='{(tmp_path / 'secret.txt').as_uri()}'>"
        f"<script>fetch('{out}/fetch').catch(() => 0); new Worker('w.js')</script>")
    (task / "w.js").write_text(f"fetch('{out}/wfetch').catch(() => 0)")
    guard = OriginGuard(file_dirs=[task])
    context = browser.new_context(guard)
    try:
        tab = context.new_page()
        tab.goto((task / "page.html").as_uri())
        wait_for(lambda: len(guard.blocked) >= 3, tab)
        tab.wait_for_timeout(300)
    finally:
        context.close()
    assert outside.events == []
    blocked = " ".join(guard.blocked)
    assert "/iframe" in blocked and "/fetch" in blocked and "secret.txt" in blocked, guard.blocked


def test_contexts_count_their_own_refusals(browser, site, outside):
    """Two contexts at once: each has its own proxy and counts only its own refusals."""
    from adapters.browser import OriginGuard

    guards = [OriginGuard(origins={site.origin}), OriginGuard(origins={site.origin})]
    contexts = [browser.new_context(g) for g in guards]
    try:
        tabs = [c.new_page() for c in contexts]
        tabs[0].goto(site.origin + "/r302")
        tabs[1].goto(site.origin + "/ok")
        wait_for(lambda: guards[0].blocked, tabs[0])
    finally:
        for c in contexts:
            c.close()
    assert guards[0].blocked and all(str(outside.port) in b for b in guards[0].blocked) and guards[1].blocked == []
    assert outside.events == []


def test_proxy_stops_with_its_context(browser, site):
    from adapters.browser import OriginGuard

    def proxy_threads() -> set[str]:
        return {t.name for t in threading.enumerate() if t.name.startswith("jitrl-egress-")}

    before = proxy_threads()
    context = browser.new_context(OriginGuard(origins={site.origin}))
    started = proxy_threads() - before
    assert len(started) == 1
    port = int(next(iter(started)).rsplit("-", 1)[1])
    context.close()
    assert proxy_threads() == before
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# -- the refusing proxy itself -------------------------------------------------------------------------
def test_refusing_proxy_refuses_and_records(outside):
    from adapters.egress import RefusingProxy

    outside.events.clear()
    seen: list[str] = []
    with RefusingProxy(seen.append) as proxy:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.server}))
        with pytest.raises(urllib.error.HTTPError) as err:
            opener.open(f"http://127.0.0.1:{outside.port}/x?y=1", timeout=5)
        assert err.value.code == 403
        with pytest.raises(urllib.error.HTTPError) as err:
            opener.open(urllib.request.Request(f"http://127.0.0.1:{outside.port}/post", data=b"a=b"), timeout=5)
        assert err.value.code == 403
        with socket.create_connection(("127.0.0.1", int(proxy.server.rsplit(":", 1)[1])), timeout=5) as s:
            s.sendall(f"CONNECT 127.0.0.1:{outside.port} HTTP/1.1\r\nHost: 127.0.0.1:{outside.port}\r\n\r\n".encode())
            assert s.recv(64).startswith(b"HTTP/1.1 403")
    assert seen == [f"http://127.0.0.1:{outside.port}/x?y=1", f"http://127.0.0.1:{outside.port}/post",
                    f"CONNECT 127.0.0.1:{outside.port}"]
    assert outside.events == []


def test_bypass_rules():
    from adapters.egress import bypass_rules, endpoint_of

    assert bypass_rules([]) == "<-loopback>"
    assert bypass_rules([""]) == "<-loopback>"
    assert bypass_rules({"http://LocalHost:7780", "https://wa.example", "http://wa.example"}) == (
        "<-loopback>,localhost:7780,wa.example:443,wa.example:80")
    assert endpoint_of("http://[::1]:8080") == "[::1]:8080"
    with pytest.raises(ValueError):
        endpoint_of("file:///tmp")


def test_new_context_keeps_its_proxy(browser):
    from adapters.browser import OriginGuard

    with pytest.raises(ValueError, match="proxy"):
        browser.new_context(OriginGuard(), proxy={"server": "http://127.0.0.1:1"})


def test_origin_of_serialises_like_a_browser():
    from adapters.browser import OriginGuard, origin_of

    assert origin_of("http://Shop.Example:80/admin") == "http://shop.example"
    assert origin_of("https://u:pw@shop.example:443/x") == "https://shop.example"
    assert origin_of("http://127.0.0.1:7780/admin") == "http://127.0.0.1:7780"
    assert origin_of("http://[::1]:8080/") == "http://[::1]:8080"
    assert origin_of("file:///tmp/x.html") == "" and origin_of("http://h:notaport/") == ""
    # a site configured with its default port allows the URLs Chromium requests without it
    guard = OriginGuard(origins={origin_of("http://shop.example:80/admin")})
    assert guard.allows("http://shop.example/admin/index.php") and not guard.allows("http://shop.example:8080/")
