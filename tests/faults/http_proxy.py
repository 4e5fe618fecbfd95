"""A counting, fault-injecting HTTP proxy between a campaign and a lab (real sockets, loopback).

The campaign's oracle points at ``proxy.url``; the proxy forwards each request to ``upstream``
(the lab simulator) unless a fault strikes. Faults hit the job endpoints only (``POST /jobs``,
``GET /jobs/{id}``, cancel), never ``/health`` or ``/stats``:

- ``"503"``: answered 503 (with ``Retry-After: 0``) BEFORE forwarding: the lab never sees it;
- ``"drop"``: forwarded (the lab accepts the job), then the client's connection is closed
  without a reply: the client cannot know whether the job exists;
- ``"delay"``: held ``delay_s`` before forwarding (a slow network).

What the lab saw is counted per idempotency key and per design (the SHA-256 of the design's
JSON): ``posts_by_key`` / ``posts_by_design`` count POSTs forwarded, ``created_by_key`` /
``created_by_design`` those the lab answered 201 (a new job: a paid evaluation).

    >>> with FaultProxy(lab.url, rates={"503": 0.1, "drop": 0.05}, seed=1) as proxy:  # doctest: +SKIP
    ...     oracle = HttpOracle(proxy.url)
    ...     proxy.paid_twice()                                                       # doctest: +SKIP
    0

Every wait is bounded (upstream requests time out after ``upstream_timeout_s``; ``close`` ends
delays at once and joins the server thread with a limit).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import random
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import urlsplit

from oracles.labsim.faults import draw_fault

FAULTS: tuple[str, ...] = ("503", "drop", "delay")
#: response headers passed back to the client (hop-by-hop ones are the proxy's own)
_PASS_HEADERS = ("Content-Type", "Retry-After", "WWW-Authenticate")


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server that treats a client hanging up (a SIGKILLed driver, a client
    timeout) as routine instead of printing a traceback to stderr."""

    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


_S = TypeVar("_S", bound="ServedInThread")


class ServedInThread:
    """A :class:`QuietServer` on ``127.0.0.1:ephemeral`` served from a daemon thread, as a
    context manager. A subclass calls :meth:`_serve` with its handler and, in :meth:`_wake`,
    ends any request it holds (delays, hangs) so that ``close`` returns at once."""

    _server: QuietServer
    _thread: threading.Thread | None
    _thread_name: str

    def _serve(self, handler: type[BaseHTTPRequestHandler], thread_name: str) -> None:
        self._server = QuietServer(("127.0.0.1", 0), handler)
        self._thread = None
        self._thread_name = thread_name

    def _wake(self) -> None:
        """Release requests held by the handler (none here)."""

    def start(self: _S) -> _S:
        """Serve from a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.05}, daemon=True,
                                            name=self._thread_name)
            self._thread.start()
        return self

    def __enter__(self: _S) -> _S:
        return self.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        """Stop serving: held requests end at once, the port is released."""
        self._wake()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def __exit__(self, *exc: object) -> None:
        self.close()



def design_digest(body: bytes) -> str | None:
    """SHA-256 of the request's ``design`` (canonical JSON), or None when the body has none."""
    try:
        design = json.loads(body)["design"]
    except (ValueError, KeyError, TypeError):
        return None
    return hashlib.sha256(json.dumps(design, separators=(",", ":")).encode()).hexdigest()[:16]


class FaultProxy(ServedInThread):
    """The proxy (see the module docstring).

    Args:
        upstream: ``http://host:port`` of the lab.
        rates: fault kind -> probability per job request (they must sum to <= 1).
        script: fault kinds (or ``"ok"``) for the first job requests, in order.
        seed: seed of the random draws (reproducible fault sequences).
        delay_s: how long a ``"delay"`` fault holds a request.
        upstream_timeout_s: limit of each forwarded request.
    """

    def __init__(self, upstream: str, *, rates: Mapping[str, float] | None = None,
                 script: Iterable[str] = (), seed: int = 0, delay_s: float = 0.2,
                 upstream_timeout_s: float = 30.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream {upstream!r} must be http://host:port")
        self.upstream = (parts.hostname, parts.port)
        self.delay_s = float(delay_s)
        self.upstream_timeout_s = float(upstream_timeout_s)
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._closing = threading.Event()
        self.set_faults(rates or {}, script)
        self.injected: Counter[str] = Counter()
        self.posts_by_key: Counter[str] = Counter()
        self.posts_by_design: Counter[str] = Counter()
        self.created_by_key: Counter[str] = Counter()
        self.created_by_design: Counter[str] = Counter()
        self.requests = 0
        self._serve(self._handler_class(), "fault-proxy")

    def _wake(self) -> None:
        self._closing.set()  # delayed requests end at once

    # ---- configuration ---------------------------------------------------------------------
    def set_faults(self, rates: Mapping[str, float], script: Iterable[str] = ()) -> None:
        """Replace the fault rates and script (thread-safe; takes effect on the next request)."""
        rates = {str(k): float(v) for k, v in rates.items()}
        unknown = set(rates) - set(FAULTS)
        if unknown or any(not 0 <= r <= 1 for r in rates.values()) or sum(rates.values()) > 1:
            raise ValueError(f"fault rates {rates} must name {FAULTS}, each in [0, 1], sum <= 1")
        entries = [str(s) for s in script]
        if set(entries) - {*FAULTS, "ok"}:
            raise ValueError(f"script entries must be 'ok' or one of {FAULTS}: {entries}")
        with self._lock:
            self._rates, self._script = rates, entries

    def _next_fault(self) -> str | None:
        with self._lock:
            if self._script:
                fault: str | None = self._script.pop(0)
                fault = None if fault == "ok" else fault
            else:
                fault = draw_fault(self._rng, self._rates, FAULTS)
            if fault:
                self.injected[fault] += 1
            return fault

    # ---- what the lab saw ------------------------------------------------------------------
    def paid_twice(self) -> int:
        """Evaluations the lab created beyond the first per key and per design."""
        with self._lock:
            return (sum(n - 1 for n in self.created_by_key.values() if n > 1)
                    + sum(n - 1 for n in self.created_by_design.values() if n > 1))

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain data."""
        with self._lock:
            return {"requests": self.requests, "injected": dict(self.injected),
                    "posts": sum(self.posts_by_key.values()),
                    "max_posts_per_key": max(self.posts_by_key.values(), default=0),
                    "created": sum(self.created_by_key.values())}

    def _record_post(self, key: str | None, digest: str | None, status: int | None) -> None:
        with self._lock:
            if key is not None:
                self.posts_by_key[key] += 1
            if digest is not None:
                self.posts_by_design[digest] += 1
            if status == 201:
                if key is not None:
                    self.created_by_key[key] += 1
                if digest is not None:
                    self.created_by_design[digest] += 1

    # ---- serving ---------------------------------------------------------------------------
    def _forward(self, method: str, path: str, body: bytes | None,
                 headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=self.upstream_timeout_s)
        try:
            conn.request(method, path, body=body, headers=dict(headers))
            response = conn.getresponse()
            data = response.read()
            kept = {h: v for h in _PASS_HEADERS if (v := response.getheader(h)) is not None}
            return response.status, kept, data
        finally:
            conn.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def _reply(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.requests += 1
                job = self.path.startswith("/jobs")
                fault = proxy._next_fault() if job else None
                if fault == "503":
                    return self._reply(503, {"Content-Type": "application/json", "Retry-After": "0"},
                                       b'{"error": "injected by the proxy: service unavailable"}')
                if fault == "delay" and proxy._closing.wait(proxy.delay_s):
                    self.close_connection = True
                    return None
                sent = {h: v for h in ("Content-Type", "Authorization", "Idempotency-Key", "Accept")
                        if (v := self.headers.get(h)) is not None}
                try:
                    status, headers, data = proxy._forward(self.command, self.path, body, sent)
                except (OSError, http.client.HTTPException) as exc:
                    status, headers = 502, {"Content-Type": "application/json"}
                    data = json.dumps({"error": f"proxy: upstream failed: {exc}"}).encode()
                    if self.command == "POST" and self.path == "/jobs":
                        # the lab may or may not have seen it: counted as sent, not as created
                        proxy._record_post(self.headers.get("Idempotency-Key"),
                                           design_digest(body or b""), None)
                    return self._reply(status, headers, data)
                if self.command == "POST" and self.path == "/jobs":
                    proxy._record_post(self.headers.get("Idempotency-Key"),
                                       design_digest(body or b""), status)
                if fault == "drop":
                    self.close_connection = True  # the lab answered; the client never hears it
                    return None
                return self._reply(status, headers, data)

            do_GET = do_POST = _handle  # noqa: N815 - stdlib names

        return Handler
