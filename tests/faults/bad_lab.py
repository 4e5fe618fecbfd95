"""A fake lab speaking the lab job API (``oracles/openapi.json``) over real HTTP on loopback, with
one bad-reply mode: the ways a careless or broken lab server answers.

Modes (``MODES``) and the request they spoil:

=============== ======= =================================================================
mode            spoils  reply
=============== ======= =================================================================
``nan``         GET     a succeeded job whose value is the non-standard JSON token ``NaN``
``inf``         GET     a value of ``Infinity``
``string``      GET     a value given as a string (``"1.5"``)
``missing``     GET     a succeeded job without ``values``
``no-status``   GET     a job without ``status``
``wrong-key``   GET     the job of another idempotency key
``no-id``       POST    ``201`` without a job ``id``
``429``         both    ``429`` with ``Retry-After: <retry_after>``
``hang``        GET     no reply at all (held until the client gives up or the lab closes)
``huge``        GET     a failed job padded to 10 MB (``metadata`` and ``error``)
``endless``     GET     a chunked body that never ends (a chunk every 0.05 s: no read times out)
``html``        both    ``200`` with an HTML page (a login or error page of a gateway)
``invalid-json`` both   ``200`` with truncated JSON
=============== ======= =================================================================

Mode ``scripted``: every job request gets ``lab.reply = (status, headers, body bytes)`` as set
by the test (fuzzing the client's reply parsing with arbitrary replies).

``ok_after=N``: the mode spoils only the first ``N`` requests it targets, then the lab answers
correctly (a flaky lab: success after retry). Otherwise it spoils them all.

Counts: ``counts["POST"]``, ``counts["GET"]``, ``counts["cancel"]``, ``posts_by_key``, and
``spoiled`` (replies the mode spoiled).

    >>> with BadLab("nan") as lab:                      # doctest: +SKIP
    ...     oracle = HttpOracle(lab.url, objectives=("y",))
"""
from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from faults.http_proxy import ServedInThread

#: mode -> the requests it spoils
MODES: dict[str, str] = {
    "nan": "GET", "inf": "GET", "string": "GET", "missing": "GET", "no-status": "GET",
    "wrong-key": "GET", "no-id": "POST", "429": "both", "hang": "GET", "huge": "GET", "endless": "GET",
    "html": "both", "invalid-json": "both",
}
VALUE = 1.5  # what a correct reply reports for objective "y"
HUGE_BYTES = 10 * 1024 * 1024
_HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


class BadLab(ServedInThread):
    """The fake lab (see the module docstring).

    Args:
        mode: one of ``MODES``, or ``"ok"`` (a correct lab).
        ok_after: spoil only this many targeted requests, then answer correctly.
        retry_after: the ``Retry-After`` header value sent with 429s (text, sent as is).
        hang_s: longest a ``hang`` reply is held (bounded: ``close`` also ends it).
        objective: the objective name reported.
    """

    def __init__(self, mode: str, *, ok_after: int | None = None, retry_after: str = "0",
                 hang_s: float = 30.0, objective: str = "y") -> None:
        if mode not in ("ok", "scripted") and mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {sorted(MODES)}, 'ok' or "
                             f"'scripted'")
        self.mode, self.ok_after, self.retry_after = mode, ok_after, retry_after
        self.hang_s, self.objective = hang_s, objective
        self.counts: Counter[str] = Counter()
        self.posts_by_key: Counter[str] = Counter()
        self.spoiled = 0
        self._huge: dict[str, bytes] = {}
        #: the reply of every job request in mode ``scripted``: (status, headers, body)
        self.reply: tuple[int, dict[str, str], bytes] = (200, {}, b"{}")
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._serve(self._handler_class(), f"bad-lab-{self.mode}")

    def _wake(self) -> None:
        self._release.set()  # held (``hang``) replies end at once

    def _spoil(self, method: str) -> bool:
        """Whether this request gets the bad reply (counts it)."""
        target = MODES.get(self.mode)
        if target is None or target not in (method, "both"):
            return False
        with self._lock:
            if self.ok_after is not None and self.spoiled >= self.ok_after:
                return False
            self.spoiled += 1
            return True

    def job(self, key: str, **changes: Any) -> dict[str, Any]:
        """A correct ``Job`` object for ``key`` (finished at once), with ``changes``."""
        return {"id": f"job-{key}", "key": key, "status": "succeeded",
                "values": {self.objective: VALUE}, "noise": None, "error": None,
                "metadata": {}, "created_at": 0.0, **changes}

    def _bad_job(self, key: str) -> bytes:
        """The spoiled ``GET /jobs/{id}`` body of the JSON-shaped modes."""
        if self.mode in ("nan", "inf"):
            token = "NaN" if self.mode == "nan" else "Infinity"
            return json.dumps(self.job(key)).replace(str(VALUE), token).encode()
        if self.mode == "string":
            return json.dumps(self.job(key, values={self.objective: str(VALUE)})).encode()
        if self.mode == "missing":
            body = self.job(key)
            del body["values"]
            return json.dumps(body).encode()
        if self.mode == "no-status":
            body = self.job(key)
            del body["status"]
            return json.dumps(body).encode()
        if self.mode == "wrong-key":
            return json.dumps(self.job("someone-else:0:0", id=f"job-{key}")).encode()
        if self.mode == "huge":  # built once per key: a slow reply is not what this mode tests
            with self._lock:
                if key not in self._huge:
                    pad = "x" * (HUGE_BYTES // 2)
                    self._huge[key] = json.dumps(self.job(key, status="failed", values=None,
                                                          metadata={"pad": pad}, error=pad)).encode()
                return self._huge[key]
        raise AssertionError(self.mode)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        lab = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json",
                      headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _endless(self) -> None:
                """Chunks of a JSON string until the client hangs up or the lab closes."""
                self.close_connection = True
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b'{"status": "succeeded", "pad": "' + b"x" * 4096
                    while not lab._release.wait(0.05):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                        chunk = b"x" * 4096
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _generic(self) -> bool:
                """The spoils shared by POST and GET; True when a reply was sent."""
                if lab.mode == "429":
                    self._send(429, b'{"error": "too many requests"}',
                               headers={"Retry-After": lab.retry_after})
                elif lab.mode == "html":
                    self._send(200, _HTML, "text/html")
                elif lab.mode == "invalid-json":
                    self._send(200, b'{"id": "job-1", "status": "succ')
                elif lab.mode == "hang":
                    lab._release.wait(lab.hang_s)
                    self.close_connection = True
                elif lab.mode == "endless":
                    self._endless()
                else:
                    return False
                return True

            def _scripted(self) -> None:
                status, headers, body = lab.reply
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if lab.mode == "scripted":
                    return self._scripted()
                if self.path.endswith("/cancel"):
                    lab.counts["cancel"] += 1
                    key = unquote(self.path.split("/")[2]).removeprefix("job-")
                    return self._send(200, json.dumps(lab.job(key, status="cancelled",
                                                              values=None)).encode())
                key = self.headers.get("Idempotency-Key", "")
                with lab._lock:
                    lab.counts["POST"] += 1
                    lab.posts_by_key[key] += 1
                try:
                    json.loads(body)
                except ValueError:
                    return self._send(400, b'{"error": "body is not JSON"}')
                if lab._spoil("POST"):
                    if lab.mode == "no-id":
                        return self._send(201, b'{"status": "running"}')
                    if self._generic():
                        return None
                return self._send(201, json.dumps(lab.job(key, status="running",
                                                          values=None)).encode())

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                if self.path == "/health":
                    return self._send(200, b'{"status": "ok"}')
                lab.counts["GET"] += 1
                if lab.mode == "scripted":
                    return self._scripted()
                key = unquote(self.path.rsplit("/", 1)[-1]).removeprefix("job-")
                if lab._spoil("GET"):
                    if self._generic():
                        return None
                    return self._send(200, lab._bad_job(key))
                return self._send(200, json.dumps(lab.job(key)).encode())

        return Handler
