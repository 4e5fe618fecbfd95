"""The lab simulator: a real HTTP server implementing the lab job API (``oracles/openapi.json``)
over any simulated oracle, with latency, noise and injectable faults.

Two ways to run it:

1. in a thread of the current process, on a free loopback port (tests)::

    >>> with LabSimulator(BoTorchFunctionOracle("branin")) as lab:
    ...     oracle = HttpOracle(lab.url, objectives=("y",))

2. as a subprocess ``python -m oracles.labsim`` that can be SIGKILLed (crash tests, the demo):
   :class:`LabSimulatorProcess`.
"""
from __future__ import annotations

import hmac
import json
import logging
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from oracles.errors import OracleConfigError
from oracles.labsim.faults import FaultPlan
from oracles.labsim.store import JobConflict, JobRejected, JobStore
from oracles.shape import describe_oracle
from oracles.simulated.base import SimulatedOracle

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 16 * 1024 * 1024
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
_JOB_RE = re.compile(r"^/jobs/([A-Za-z0-9_-]{1,128})(/cancel)?$")


def public_job(job: dict[str, Any]) -> dict[str, Any]:
    """The ``Job`` object of the API (no design echoed back)."""
    return {k: job[k] for k in ("id", "key", "status", "values", "noise", "error", "metadata",
                                "created_at")}


class _Handler(BaseHTTPRequestHandler):
    server: _LabHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, like a real API server
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms stalls

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # the request line only; headers (Authorization) are never logged
        logger.debug("labsim %s - %s", self.address_string(), format % args)

    # ---- plumbing ------------------------------------------------------------------------
    def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout fault)
            self.close_connection = True

    def _error(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(code, {"error": message}, headers)

    def _authorized(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
        self._error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        return False

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
        elif length:
            self.rfile.read(length)

    def _read_json(self) -> tuple[bool, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._error(413, f"body of {length} bytes exceeds {MAX_BODY_BYTES}")
            self.close_connection = True
            return False, None
        raw = self.rfile.read(length) if length else b""
        try:
            return True, json.loads(raw)
        except ValueError as exc:
            self._error(400, f"body is not valid JSON: {exc}")
            return False, None

    # ---- dispatch ------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path == "/health":
            return self._send(200, self.server.health)
        if self.path == "/stats":
            return self._send(200, self.server.store.stats()) if self._authorized() else None
        match = _JOB_RE.match(self.path)
        if not match or match.group(2):
            return self._error(404, f"no route GET {self.path}")
        self._job_request(lambda: self.server.store.get(match.group(1)), match.group(1))

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        if self.path == "/jobs":
            return self._create()
        self._drain()  # cancel takes no body; drain whatever came so keep-alive stays in sync
        match = _JOB_RE.match(self.path)
        if not match or not match.group(2):
            return self._error(404, f"no route POST {self.path}")
        self._job_request(lambda: self.server.store.cancel(match.group(1)), match.group(1))

    def _job_request(self, action: Any, job_id: str) -> None:
        if not self._authorized():
            return
        self.server.store.count_request()
        fault = self.server.faults.next_request_fault()
        if fault == "429":
            return self._too_many()
        job = action()
        if job is None:
            return self._error(404, f"no job {job_id!r}")
        self._reply(fault, 200, public_job(job))

    def _create(self) -> None:
        ok, body = self._read_json()
        if not ok or not self._authorized():
            return
        key = self.headers.get("Idempotency-Key")
        if key is None or not _KEY_RE.match(key):
            return self._error(400, "header Idempotency-Key is required: 1-255 printable ASCII "
                                    "characters, no spaces")
        if not isinstance(body, dict) or "design" not in body:
            return self._error(400, 'body must be a JSON object {"design": [...], '
                                    '"metadata": {...}}')
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            return self._error(400, "metadata must be a JSON object")
        self.server.store.count_request()
        fault = self.server.faults.next_request_fault()
        if fault == "429":
            return self._too_many()
        try:
            job, created = self.server.store.create(key, body["design"], metadata)
        except JobConflict as exc:
            return self._error(409, str(exc))
        except JobRejected as exc:
            return self._error(422, str(exc))
        self._reply(fault, 201 if created else 200, public_job(job))

    def _too_many(self) -> None:
        retry_after = self.server.faults.retry_after_s
        self._error(429, "too many requests", {"Retry-After": f"{retry_after:g}"})

    def _reply(self, fault: str | None, code: int, body: dict[str, Any]) -> None:
        # faults that strike after the request was processed: the reply is what gets lost
        if fault == "500":
            return self._error(500, "injected internal server error")
        if fault == "timeout":
            time.sleep(self.server.faults.delay_s)
        if fault == "drop":
            self.close_connection = True
            return
        if fault == "malformed":
            return self._send(200, json.dumps(body).encode()[: 15])
        self._send(code, body)


class _LabHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # A client with 16+ connections opening at once (after keep-alive expiry) overflowed the
    # default backlog of 5; the kernel then retries a dropped connect only after 1 s.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # clients that hang up (timeouts, killed processes) are routine for a lab server
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            logger.debug("labsim: client %s went away: %s", client_address, exc)
        else:
            logger.exception("labsim: error while serving %s", client_address)

    def __init__(self, address: tuple[str, int], store: JobStore, faults: FaultPlan,
                 token: str | None, describe: bool = True) -> None:
        super().__init__(address, _Handler)
        self.store, self.faults, self.token = store, faults, token
        #: ``GET /health``: alive, plus what the lab takes and reports (``oracles/openapi.json``);
        #: ``describe=False``: alive only, like a lab that does not describe itself
        described = describe_oracle(store.oracle) if describe else None
        self.health = {"status": "ok", **(described.to_json() if described else {})}


class LabSimulator:
    """The lab job API over ``oracle``, served from a background thread.

    Args:
        oracle: evaluates the designs (its ``latency_s`` is the job duration).
        host, port: where to listen; port 0 picks a free port.
        faults: faults to inject (default: none).
        token: bearer token required on every job request (None: no auth).
        state_path: JSON file persisting jobs across restarts.
        tls_cert, tls_key: PEM files; when given the simulator speaks HTTPS.
        describe: report ``design_shape`` / ``objectives`` on ``GET /health`` (False: only
            ``{"status": "ok"}``, like a lab that does not describe itself).
    """

    def __init__(self, oracle: SimulatedOracle, *, host: str = "127.0.0.1", port: int = 0,
                 faults: FaultPlan | None = None, token: str | None = None,
                 state_path: str | Path | None = None, tls_cert: str | Path | None = None,
                 tls_key: str | Path | None = None, describe: bool = True) -> None:
        self.faults = faults or FaultPlan()
        self.store = JobStore(oracle, self.faults, state_path)
        self._server = _LabHTTPServer((host, port), self.store, self.faults, token, describe)
        self._scheme = "http"
        if tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(str(tls_cert), str(tls_key) if tls_key else None)
            except (OSError, ssl.SSLError) as exc:
                self._server.server_close()
                raise OracleConfigError(f"tls_cert={str(tls_cert)!r} / tls_key={str(tls_key)!r}: "
                                        f"cannot load ({exc})") from None
            # handshake in the handler thread, so one stalled client cannot block accept()
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True,
                                                      do_handshake_on_connect=False)
            self._scheme = "https"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http(s)://host:port`` of the running server."""
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET(6) server: the host is text, never bytes
        return f"{self._scheme}://{host}:{port}"

    def start(self) -> LabSimulator:
        """Serve from a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.05}, daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve from the calling thread (the CLI)."""
        self._server.serve_forever(poll_interval=0.2)

    def stats(self) -> dict[str, Any]:
        """Same as ``GET /stats``."""
        return self.store.stats()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> LabSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class LabSimulatorProcess:
    """``python -m oracles.labsim ARGS --port 0`` as a subprocess, for crash tests and demos.

    Args:
        args: CLI arguments (see ``python -m oracles.labsim --help``), without ``--port``.
        env: extra environment variables (e.g. the token variable named by ``--token-env``).
        log_path: file for the server's stderr (default: discarded).
        startup_timeout_s: how long to wait for the URL line.

    ``url`` is read from the first stdout line; the second (``labsim serves NAME: designs of
    shape ..., objectives [...]``) is left for the caller in ``process.stdout``.
    """

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None,
                 log_path: str | Path | None = None, startup_timeout_s: float = 120.0) -> None:
        root = str(Path(__file__).resolve().parents[2])
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, full_env.get("PYTHONPATH")]))
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "oracles.labsim", *args, "--port", "0"],
            stdout=subprocess.PIPE, stderr=self._log, env=full_env, text=True)
        self.url = self._read_url(startup_timeout_s)

    def _read_url(self, timeout_s: float) -> str:
        result: list[str] = []
        stdout = self.process.stdout
        assert stdout is not None  # started with stdout=PIPE
        reader = threading.Thread(target=lambda: result.append(stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout_s)
        line = result[0] if result else ""
        match = re.search(r"(https?://\S+)", line)
        if not match:
            self.kill()
            raise OracleConfigError(f"lab simulator did not print its URL within {timeout_s} s "
                                    f"(got {line!r}); run python -m oracles.labsim by hand to "
                                    f"see why")
        return match.group(1)

    def kill(self) -> None:
        """SIGKILL the server (no clean shutdown: a crash)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        if not isinstance(self._log, int):  # a log file, not subprocess.DEVNULL
            self._log.close()

    def __enter__(self) -> LabSimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
