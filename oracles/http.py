"""HTTP oracle: a client for lab job APIs (the API is ``oracles/openapi.json``).

1. ``submit``: ``POST /jobs`` with header ``Idempotency-Key: <key>`` and body
   ``{"design": [...], "metadata": {...}}`` → a ``Job`` with its ``id`` (201 new, 200 existing).
2. ``poll``: ``GET /jobs/{id}`` → the ``Job`` (status, values, noise, error); 404 → ``unknown``.
3. ``cancel``: ``POST /jobs/{id}/cancel``.
4. ``describe``: ``GET /health`` → the lab's optional ``design_shape`` and ``objectives``, read
   once before a campaign starts so a prior/lab shape mismatch is refused up front.

Retries: connection errors, timeouts, 5xx, 408, 429 and unparseable replies are retried with
exponential backoff and jitter, `delay_n = min(max, base · 2^(n−1)) · U(0.5, 1)`, and at least the
server's ``Retry-After``; other 4xx are never retried (a POST retry is safe: it carries the same
idempotency key). A reply body is read up to 16 MiB (``MAX_REPLY_BYTES``, decoded) and must be
complete within ``timeout_s`` of its start; a larger or endless reply counts as a failed attempt.
Secrets: the bearer token is read from an environment variable or a file, held
in memory only, and never appears in logs, reprs, handles or error messages. TLS certificates are
verified unless ``verify=False``; plain ``http://`` is refused for non-loopback hosts unless
``allow_insecure_http=True``.

>>> oracle = HttpOracle("https://lab.example.org/api", objectives=("yield",),
...                     token_env="LAB_TOKEN", timeout_s=10.0)
"""
from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from oracles.errors import (OracleConfigError, OracleRejectedError, OracleReplyError,
                            OracleTransientError)
from oracles.protocol import JobHandle, QueryRequest, QueryResult, design_to_json
from oracles.shape import LabDescription, description_from_json
from oracles.sync import check_objectives
from oracles.validation import (failed, result_from_reply, submit_failure_handle,
                                submit_failure_result)

logger = logging.getLogger(__name__)


class RetryPolicy(BaseModel):
    """How hard to retry transient failures (zero backoff in tests)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # Upper bounds: a wait of 1e308 s is no policy, and time.sleep raises OverflowError on it.
    max_attempts: int = Field(6, ge=1, le=100)
    backoff_base_s: float = Field(0.5, ge=0, le=3600)
    backoff_max_s: float = Field(30.0, ge=0, le=3600)
    retry_after_max_s: float = Field(300.0, ge=0, le=86_400)

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        backoff = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        backoff *= 0.5 + 0.5 * rng.random()
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.retry_after_max_s))
        return backoff


class _Secret:
    """A string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


class _BearerAuth(httpx.Auth):
    def __init__(self, secret: _Secret) -> None:
        self._secret = secret

    def auth_flow(self, request: httpx.Request):  # type: ignore[override]
        request.headers["Authorization"] = f"Bearer {self._secret.reveal()}"
        yield request


def _check_token(value: str, where: str) -> _Secret:
    """A bearer token is one line of printable ASCII: a CR/LF or another control character in
    it (a token file saved with Windows line breaks in the middle, two tokens pasted) would make
    every request fail on the client side, so it is refused when the oracle is built."""
    if not value:
        raise OracleConfigError(f"{where} is empty")
    for i, ch in enumerate(value):
        if not " " < ch < "\x7f":
            what = {"\r": "a carriage return (CR)", "\n": "a line break (LF)", " ": "a space",
                    "\t": "a tab"}.get(ch, f"the character U+{ord(ch):04X}")
            raise OracleConfigError(
                f"{where}: the token contains {what} at position {i + 1} (value not shown); a "
                "bearer token is one line of printable ASCII: rewrite it without it")
    return _Secret(value)


def read_token(token_env: str | None, token_file: str | Path | None) -> _Secret | None:
    """Read the bearer token; errors name the variable or file, never the token."""
    if token_env and token_file:
        raise OracleConfigError("give token_env or token_file, not both")
    if token_env:
        value = os.environ.get(token_env, "").strip()
        if not value:
            raise OracleConfigError(f"token_env={token_env!r}: the environment variable is unset "
                                    f"or empty; export {token_env}=<token> before starting")
        return _check_token(value, f"token_env={token_env!r}")
    if token_file:
        try:
            value = Path(token_file).read_bytes().decode("utf-8").strip()
        except OSError as exc:
            raise OracleConfigError(f"token_file={str(token_file)!r}: cannot read it "
                                    f"({exc.strerror}); check the path and permissions") from None
        except UnicodeDecodeError:
            raise OracleConfigError(f"token_file={str(token_file)!r} is not UTF-8 text; a bearer "
                                    "token is one line of printable ASCII") from None
        return _check_token(value, f"token_file={str(token_file)!r}")
    return None


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds, fractional accepted, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


#: the largest reply body read from a lab (a job is a few hundred bytes; /health a little more)
MAX_REPLY_BYTES = 16 * 2**20


class _ReplyTooBig(Exception):
    """A reply body over :data:`MAX_REPLY_BYTES`, or not complete within the timeout."""


class _Reply:
    """A non-retryable reply: a 2xx with parsed JSON, or a 4xx with its text."""

    def __init__(self, status: int, body: Any, text: str) -> None:
        self.status, self.body, self.text = status, body, text

    def reason(self) -> str:
        detail = self.body.get("error") if isinstance(self.body, dict) else None
        return f"HTTP {self.status}: {str(detail or self.text)[:300]}"


class HttpOracle:
    """Client of a lab job API (see module docstring).

    Args:
        base_url: the API root, e.g. ``https://lab.example.org/api``.
        objectives: objective names the lab reports (maximized).
        token_env / token_file: where the bearer token is (at most one; none = no auth).
        verify: verify TLS (True), don't (False), or a CA bundle path.
        timeout_s: read/write/pool timeout per request; ``connect_timeout_s`` for connecting.
        retry: the :class:`RetryPolicy`.
        max_concurrency: requests in flight at once (connection pool size and worker threads).
        allow_insecure_http: permit ``http://`` to a non-loopback host.
        seed: seed of the backoff jitter.
        sleep: how to wait between retries (tests pass a recorder).
        name: shown in logs.
    """

    def __init__(self, base_url: str, objectives: Sequence[str] = ("y",), *,
                 token_env: str | None = None, token_file: str | Path | None = None,
                 verify: bool | str = True, timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0, retry: RetryPolicy | None = None,
                 max_concurrency: int = 16, allow_insecure_http: bool = False,
                 seed: int | None = None, sleep: Callable[[float], None] = time.sleep,
                 name: str | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OracleConfigError(f"base_url={base_url!r} must be an http(s):// URL with a host")
        if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
            raise OracleConfigError(
                f"base_url={base_url!r} is plain http to a non-loopback host: the token and the "
                f"results would travel unencrypted; use https:// or set allow_insecure_http=true")
        if parts.username or parts.password or parts.query:
            raise OracleConfigError("base_url must not carry credentials or a query string; "
                                    "use token_env / token_file")
        if max_concurrency < 1 or timeout_s <= 0 or connect_timeout_s <= 0:
            raise OracleConfigError("max_concurrency must be >= 1 and timeouts > 0")
        if verify is False:
            logger.warning("oracle %s: TLS certificate verification is OFF", base_url)
        self.base_url = base_url.rstrip("/")
        self.objectives = check_objectives(objectives)
        self.name = name or parts.hostname
        self.retry = retry or RetryPolicy()
        self._token_source = f"${token_env}" if token_env else (str(token_file) if token_file
                                                                 else None)
        secret = read_token(token_env, token_file)
        self._secret = secret
        self._sleep = sleep
        self._timeout_s = float(timeout_s)
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        try:
            self._client = httpx.Client(
                base_url=self.base_url, verify=verify, auth=_BearerAuth(secret) if secret else None,
                timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
                limits=httpx.Limits(max_connections=max_concurrency,
                                    max_keepalive_connections=max_concurrency),
                headers={"Accept": "application/json", "User-Agent": "tiltloop-oracle"})
        except (OSError, ssl.SSLError) as exc:  # a CA bundle that is missing, unreadable or not PEM
            raise OracleConfigError(
                f"verify={verify!r}: cannot load the CA bundle ({exc.strerror or exc}); give the "
                f"path of a readable PEM file of CA certificates, or verify = true for the "
                f"system's") from None
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="http-oracle")

    def __repr__(self) -> str:
        return (f"HttpOracle(base_url={self.base_url!r}, objectives={self.objectives}, "
                f"token={'<secret>' if self._token_source else None})")

    # ---- one request with retries ------------------------------------------------------------
    def _request(self, method: str, path: str, *, body: Any = None,
                 headers: dict[str, str] | None = None, key: str | None = None) -> _Reply:
        """Send until a non-retryable reply arrives; raise OracleTransientError when out of tries.
        Every retry is a WARNING naming the query ``key`` (its campaign is the key's prefix)."""
        content = None if body is None else json.dumps(body, allow_nan=False).encode()
        if content is not None:
            headers = {**(headers or {}), "Content-Type": "application/json"}
        last = ""
        for attempt in range(1, self.retry.max_attempts + 1):
            retry_after = None
            try:
                response, raw = self._exchange(method, path, content=content, headers=headers)
            except httpx.TransportError as exc:  # connect/read errors, timeouts, dropped replies
                last = f"{type(exc).__name__}: {exc}"
            except _ReplyTooBig as exc:
                last = str(exc)
            else:
                status = response.status_code
                # A lab may echo the token back ("invalid token ..."): scrub it before any of the
                # reply reaches a log line, an error text or the database.
                text = self._scrub(raw.decode(response.encoding or "utf-8", errors="replace"))
                if status in (408, 429) or status >= 500:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    last = f"HTTP {status}: {text[:200]}"
                else:
                    try:
                        parsed = json.loads(text) if raw else None
                    except ValueError:
                        parsed = ValueError
                    if status < 300 and parsed is ValueError:
                        last = f"HTTP {status} with a malformed JSON body: {text[:120]!r}"
                    else:
                        return _Reply(status, None if parsed is ValueError else parsed, text[:500])
            if attempt == self.retry.max_attempts:
                break
            with self._rng_lock:
                delay = self.retry.delay(attempt, self._rng, retry_after)
            logger.warning("oracle %s: query %s: %s %s attempt %d/%d failed (%s); retrying in "
                           "%.2f s", self.name, key or "-", method, path, attempt,
                           self.retry.max_attempts, last, delay)
            self._sleep(delay)
        raise OracleTransientError(f"{method} {self.base_url}{path} failed {self.retry.max_attempts} "
                                   f"time(s); last error: {last}")

    def _exchange(self, method: str, path: str, *, content: bytes | None = None,
                  headers: dict[str, str] | None = None, timeout_s: float | None = None
                  ) -> tuple[httpx.Response, bytes]:
        """One request and its whole reply body, bounded in size (:data:`MAX_REPLY_BYTES`) and
        in time: the body must be complete within the timeout of its first byte. The read
        timeout alone bounds each read, not the reply: a lab trickling an endless body kept a
        poll (and the campaign) waiting forever.

        Raises:
            httpx.TransportError: connecting, sending or reading failed or timed out.
            _ReplyTooBig: the body exceeds the size or time limit (the connection is closed).
        """
        kwargs: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        request = self._client.build_request(method, path, content=content, headers=headers, **kwargs)
        response = self._client.send(request, stream=True)
        limit_s = timeout_s if timeout_s is not None else self._timeout_s
        deadline = time.monotonic() + limit_s
        body = bytearray()
        try:
            for chunk in response.iter_bytes():  # decoded (gzip ...): the cap holds for a bomb too
                body += chunk
                if len(body) > MAX_REPLY_BYTES:
                    raise _ReplyTooBig(f"HTTP {response.status_code} reply larger than "
                                       f"{MAX_REPLY_BYTES // 2**20} MiB; not read further")
                if time.monotonic() > deadline:
                    raise _ReplyTooBig(f"HTTP {response.status_code} reply not complete "
                                       f"{limit_s:g} s after it started ({len(body)} bytes so "
                                       f"far); not read further")
        finally:
            response.close()
        return response, bytes(body)

    def _scrub(self, text: str) -> str:
        if self._secret is None:
            return text
        return text.replace(self._secret.reveal(), "<secret>")

    def _auth_hint(self, reply: _Reply) -> str:
        if reply.status in (401, 403):
            where = f"the token in {self._token_source}" if self._token_source else "no token set"
            return f"{reply.reason()} (check {where})"
        return reply.reason()

    # ---- what the lab says about itself --------------------------------------------------------
    def describe(self, timeout_s: float = 5.0) -> LabDescription | None:
        """The lab's ``GET /health`` fields ``design_shape`` / ``objectives`` (one try, no retry).

        Returns None when the lab says nothing about itself (no such fields, or no ``/health``:
        HTTP 404 / 405).

        Raises:
            OracleTransientError: the lab cannot be reached, times out, or answers 408/429/5xx.
            OracleRejectedError: another 4xx (e.g. 401: the message says which token to check).
            OracleReplyError: the reply is not JSON, or a field is malformed.
        """
        where = f"the oracle at {self.base_url}"
        try:
            response, raw = self._exchange("GET", "/health", timeout_s=timeout_s)
        except httpx.TransportError as exc:
            raise OracleTransientError(f"{where} cannot be reached: GET /health failed "
                                       f"({type(exc).__name__}: {exc}); start the lab or fix "
                                       f"base_url") from None
        except _ReplyTooBig as exc:
            raise OracleTransientError(f"{where}: GET /health: {exc}") from None
        status = response.status_code
        text = self._scrub(raw.decode(response.encoding or "utf-8", errors="replace"))
        if status in (404, 405):
            return None
        if status in (408, 429) or status >= 500:
            raise OracleTransientError(f"{where}: GET /health answered HTTP {status}: {text[:200]}")
        try:
            body = json.loads(text)
        except ValueError:
            body = ValueError
        if status >= 300:
            reply = _Reply(status, None if body is ValueError else body, text[:500])
            raise OracleRejectedError(f"{where}: GET /health refused: {self._auth_hint(reply)}")
        if body is ValueError:
            raise OracleReplyError(f"{where}: GET /health answered HTTP {status} with a body "
                                   f"that is not JSON: {text[:120]!r}")
        return description_from_json(body, where=where)

    # ---- the protocol --------------------------------------------------------------------------
    def _submit_one(self, request: QueryRequest) -> JobHandle:
        try:
            body = {"design": design_to_json(request.design), "metadata": dict(request.metadata)}
            reply = self._request("POST", "/jobs", body=body,
                                  headers={"Idempotency-Key": request.key}, key=request.key)
        except OracleTransientError as exc:
            return submit_failure_handle(request.key, str(exc), retryable=True)
        except ValueError as exc:  # NaN / inf in the design, non-JSON metadata
            return submit_failure_handle(request.key, f"cannot encode the request: {exc}",
                                         retryable=False)
        if reply.status >= 300:
            return submit_failure_handle(request.key, self._auth_hint(reply), retryable=False)
        job_id = reply.body.get("id") if isinstance(reply.body, dict) else None
        if not isinstance(job_id, str) or not job_id:
            return submit_failure_handle(
                request.key, f"lab replied HTTP {reply.status} without a job id: "
                             f"{reply.text[:200]!r}", retryable=True)
        return JobHandle(key=request.key, job_id=job_id, metadata={"job_id": job_id})

    def submit(self, requests: Sequence[QueryRequest]) -> list[JobHandle]:
        """``POST /jobs`` per request, concurrently; one handle per request, in order."""
        return list(self._pool.map(self._submit_one_isolated, list(requests)))

    def _submit_one_isolated(self, request: QueryRequest) -> JobHandle:
        # One reply the client cannot digest must not take its batch down with it: the others
        # may already be jobs at the lab. The same key is resubmitted later (idempotent).
        try:
            return self._submit_one(request)
        except Exception as exc:  # noqa: BLE001
            return submit_failure_handle(request.key, f"cannot read the lab's reply: "
                                                      f"{_describe(exc)}", retryable=True)

    def _poll_one(self, handle: JobHandle) -> QueryResult:
        early = submit_failure_result(handle)
        if early is not None:
            return early
        if not handle.job_id:
            return QueryResult(key=handle.key, status="unknown", error="no job id in the handle")
        try:
            reply = self._request("GET", f"/jobs/{quote(handle.job_id, safe='')}", key=handle.key)
        except OracleTransientError as exc:
            return QueryResult(key=handle.key, status="pending", error=str(exc))
        if reply.status == 404:
            return QueryResult(key=handle.key, status="unknown",
                               error=f"lab has no job {handle.job_id!r} (HTTP 404)")
        if reply.status in (401, 403):  # our credentials, not the job: keep waiting
            return QueryResult(key=handle.key, status="pending", error=self._auth_hint(reply))
        if reply.status >= 300:
            return failed(handle.key, reply.reason())
        if isinstance(reply.body, dict) and reply.body.get("key") not in (None, handle.key):
            return failed(handle.key, f"lab job {handle.job_id!r} belongs to key "
                                      f"{reply.body.get('key')!r}, not {handle.key!r}")
        return result_from_reply(handle.key, reply.body, self.objectives)

    def poll(self, handles: Sequence[JobHandle]) -> list[QueryResult]:
        """``GET /jobs/{id}`` per handle, concurrently; one validated result per handle."""
        return list(self._pool.map(self._poll_one_isolated, list(handles)))

    def _poll_one_isolated(self, handle: JobHandle) -> QueryResult:
        # Per handle: otherwise SafeOracle would fail EVERY query of the batch for one bad reply.
        try:
            return self._poll_one(handle)
        except Exception as exc:  # noqa: BLE001
            return failed(handle.key, f"cannot read the lab's reply for job {handle.job_id!r}: "
                                      f"{_describe(exc)}")

    def _cancel_one(self, handle: JobHandle) -> None:
        if not handle.job_id or submit_failure_result(handle) is not None:
            return
        try:
            reply = self._request("POST", f"/jobs/{quote(handle.job_id, safe='')}/cancel", body={},
                                  key=handle.key)
        except OracleTransientError as exc:
            logger.warning("oracle %s: cancel of %s failed: %s", self.name, handle.key, exc)
            return
        if reply.status >= 300 and reply.status != 404:
            logger.warning("oracle %s: cancel of %s refused: %s", self.name, handle.key,
                           reply.reason())

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """``POST /jobs/{id}/cancel`` per handle (best effort, errors logged)."""
        list(self._pool.map(self._cancel_one, list(handles)))

    def close(self) -> None:
        """Close connections and worker threads."""
        self._pool.shutdown(wait=True)
        self._client.close()
