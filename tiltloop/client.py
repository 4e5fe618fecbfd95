"""The lab's side of the pull API: claim work from ``tiltloop serve``, measure, report.

For labs that cannot accept inbound connections (``[oracle] kind = "pull"``)::

    from tiltloop.client import PullClient

    with PullClient("http://service:8080", "polymer-07", token=os.environ["TILTLOOP_TOKEN"],
                    client_id="lab-a-robot-2") as lab:
        for item in lab.claim(max_items=4):
            lab.report(item.key, {"yield": measure(item.design)})
        # a failed measurement: lab.report(item.key, error="sample spilled")

Both calls are safe to retry, and this client retries them itself: connection errors, 5xx and
429 answers are retried with exponential backoff and jitter (a bounded number of times, each
retry logged at WARNING with the campaign and the key). A claim keeps one request id across its
retries, so the service hands back the same items rather than new ones (idempotent, like
Vizier's per-client suggestions); a report of a result already stored is a no-op.

A claim leases its items for ``lease_s``; an item not reported in time goes back to the queue.
A late report is still accepted if nobody claimed the item since (the measurement was paid);
otherwise :class:`WorkNotHeldError` says so.
"""
from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import numpy as np

from tiltloop.errors import TiltloopError

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class PullClientError(TiltloopError):
    """The service refused a request (the message is the service's reason)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class WorkNotHeldError(PullClientError):
    """A report for an item this client no longer holds (another client claimed it since its
    lease expired, or it already has a different result): this result was not stored."""


@dataclass(frozen=True)
class WorkItem:
    """One design to measure.

    Attributes:
        key: the query's idempotency key (report with it).
        design: the design, as the campaign's prior makes it (e.g. a `d` vector or an `8 x 8` image).
        round: the round that proposed it; candidate: its index in that round.
        lease_expires_at: ISO time (database clock) until which this client holds it.
    """

    key: str
    design: np.ndarray
    round: int
    candidate: int
    lease_expires_at: str | None


class PullClient:
    """A lab client of one campaign's pull API.

    Args:
        base_url: the service's root URL (``http://127.0.0.1:8080``).
        campaign: the campaign's name.
        token: a bearer token with scope ``lab:<campaign>`` (``tiltloop token create``).
        client_id: this lab client's stable name (default: random per client object); the
            service ties claims and reports to it.
        timeout_s: seconds per HTTP request.
        retries: retries per call after the first attempt (0: none).
        backoff_s: first retry delay; doubles per retry up to ``max_backoff_s`` (with jitter).
    """

    def __init__(self, base_url: str, campaign: str, *, token: str, client_id: str | None = None,
                 timeout_s: float = 30.0, retries: int = 5, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, verify: bool | str = True) -> None:
        if retries < 0 or backoff_s < 0 or max_backoff_s < backoff_s:
            raise ValueError("retries and backoff_s must be >= 0 and max_backoff_s >= backoff_s")
        self.campaign = campaign
        self.client_id = client_id or f"lab-{uuid.uuid4().hex[:12]}"
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, verify=verify,
                                  headers={"Authorization": f"Bearer {token}"})
        self._path = f"/v1/campaigns/{campaign}"

    def claim(self, max_items: int = 1, *, lease_s: float | None = None,
              request_id: str | None = None) -> list[WorkItem]:
        """Lease up to ``max_items`` designs to measure ([] when none is queued now, or the
        campaign is not active). Retries reuse ``request_id`` (random when None), so a claim
        whose answer was lost returns the same items."""
        body: dict[str, Any] = {"client_id": self.client_id,
                                "request_id": request_id or uuid.uuid4().hex,
                                "max_items": max_items}
        if lease_s is not None:
            body["lease_s"] = lease_s
        answer = self._post(f"{self._path}/claims", body, what="claim")
        return [WorkItem(key=i["key"], design=np.asarray(i["design"], dtype=float),
                         round=int(i["round"]), candidate=int(i["candidate"]),
                         lease_expires_at=i.get("lease_expires_at"))
                for i in answer.get("items", [])]

    def report(self, key: str, values: Mapping[str, float] | None = None, *,
               noise: Mapping[str, float] | None = None, error: str | None = None) -> bool:
        """Report a measurement (``values``, optionally ``noise`` variances) or a failure
        (``error``, the reason). Returns True when stored, False when this very result was
        already stored (a retried report).

        Raises:
            WorkNotHeldError: another client holds the item now, or it has another result.
            PullClientError: the service refused the report (e.g. a missing objective).
        """
        body = {"client_id": self.client_id, "key": key,
                "values": dict(values) if values is not None else None,
                "noise": dict(noise) if noise is not None else None, "error": error}
        return bool(self._post(f"{self._path}/reports", body, what="report", key=key)["stored"])

    def _post(self, path: str, body: dict[str, Any], *, what: str, key: str | None = None
              ) -> dict[str, Any]:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.post(path, json=body)
            except httpx.TransportError as exc:
                if last:
                    raise PullClientError(f"campaign {self.campaign}: {what} failed after "
                                          f"{attempt + 1} attempts: {exc}") from None
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    data: dict[str, Any] = response.json()
                    return data
                if response.status_code not in _RETRY_STATUS or last:
                    raise _refusal(response, self.campaign, what, key)
                reason = f"HTTP {response.status_code}"
            wait = min(delay, self.max_backoff_s) * (0.5 + random.random())
            log.warning("campaign %s: %s%s failed (%s); retry %d of %d in %.1f s", self.campaign,
                        what, f" of {key}" if key else "", reason, attempt + 1, self.retries, wait)
            time.sleep(wait)
            delay *= 2
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> PullClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _refusal(response: httpx.Response, campaign: str, what: str, key: str | None
             ) -> PullClientError:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    message = f"campaign {campaign}: {what}{f' of {key}' if key else ''} refused " \
              f"(HTTP {response.status_code}): {detail}"
    cls = WorkNotHeldError if response.status_code == 409 and what == "report" else PullClientError
    return cls(message, response.status_code)
