"""Every oracle retry loop is bounded and visible: a lab with a bad-reply mode (2xx without a job
id, invalid JSON, 5xx or 429 forever, a hang) ends each query in success-after-retry or
failure-with-reason within the dispatcher's limits, the requests it receives are counted and
bounded, and every retry and give-up is a WARNING naming the campaign and the key.

The lab is a tiny HTTP server in the test (real sockets, real ``HttpOracle``); storage is real
(SQLite, and Postgres for the database-clock job age)."""
from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
from faults.bad_lab_drive import drive

from optimizer.campaign.dispatch import Dispatcher
from optimizer.campaign.query_limits import QueryLimits
from oracles.factory import build_oracle
from storage import NewCandidate, Storage
from storage.migrate import upgrade

CAMPAIGN = "lim"


class BadLab:
    """A lab job API with one bad-reply ``mode`` (see the module docstring); counts requests.

    ``ok_after``: for ``no-id``, the POST number from which replies carry a job id again."""

    def __init__(self, mode: str, *, ok_after: int | None = None) -> None:
        self.mode = mode
        self.ok_after = ok_after
        self.counts: Counter[str] = Counter()
        self.release = threading.Event()  # ends the "hang" replies at teardown
        lab = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.endswith("/cancel"):
                    lab.counts["cancel"] += 1
                    return self._send(200, b'{"status": "cancelled"}')
                lab.counts["POST"] += 1
                key = self.headers["Idempotency-Key"]
                if lab.mode == "no-id" and (lab.ok_after is None or lab.counts["POST"] < lab.ok_after):
                    return self._send(200, b'{"status": "pending"}')
                return self._send(201, json.dumps({"id": f"job-{key}", "key": key,
                                                   "status": "pending"}).encode())

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                lab.counts["GET"] += 1
                key = unquote(self.path.rsplit("/", 1)[1]).removeprefix("job-")
                if lab.mode == "invalid-json":
                    return self._send(200, b'{"status": "succ')
                if lab.mode == "5xx":
                    return self._send(503, b'{"error": "lab overloaded"}')
                if lab.mode == "429":
                    return self._send(429, b'{"error": "slow down"}', {"Retry-After": "0"})
                if lab.mode == "hang":
                    lab.release.wait(30)
                    return None
                return self._send(200, json.dumps({"id": f"job-{key}", "key": key,
                                                   "status": "succeeded",
                                                   "values": {"y": 1.5}}).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def bad_lab(request: pytest.FixtureRequest) -> Iterator[Any]:
    labs: list[BadLab] = []

    def make(mode: str, **kw: Any) -> BadLab:
        labs.append(BadLab(mode, **kw))
        return labs[-1]
    yield make
    for lab in labs:
        lab.close()


def _storage(url: str, n: int = 1) -> Storage:
    upgrade(url)
    st = Storage.open(url)
    st.create_campaign(CAMPAIGN, {"note": "dispatch limits"})
    st.record_round(CAMPAIGN, 0, alpha=1.0, candidates=[NewCandidate(np.array([float(i), 0.0]))
                                                       for i in range(n)],
                    selected=list(range(n)), oracle_name="lab")
    return st


def _dispatcher(st: Storage, lab: BadLab, limits: QueryLimits, **kw: Any) -> Dispatcher:
    # the client's own retries: 2 tries per request, no waiting (the dispatcher's limits are
    # what is tested; HttpOracle's backoff has its own tests)
    oracle = build_oracle("http", {"base_url": lab.url, "objectives": ["y"], "timeout_s": 0.3,
                                   "retry": {"max_attempts": 2, "backoff_base_s": 0.0,
                                             "backoff_max_s": 0.0}})
    return Dispatcher(st, CAMPAIGN, oracle, objectives=["y"], limit=8, limits=limits, **kw)


def _warnings(caplog: pytest.LogCaptureFixture, key: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and key in r.getMessage()]


NO_BACKOFF = {"backoff_s": 0.0, "backoff_max_s": 0.0}


def test_2xx_without_job_id_fails_after_max_submit_attempts(
        tmp_path: Path, bad_lab: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    lab = bad_lab("no-id")
    st = _storage(f"sqlite:///{tmp_path / 'd.db'}")
    d = _dispatcher(st, lab, QueryLimits(max_submit_attempts=3, **NO_BACKOFF))
    failed_seen: list[str] = []
    for _ in range(50):
        d.dispatch()
        failed_seen += d.poll().failed
        if st.in_flight_count(CAMPAIGN) == 0:
            break
    (q,) = st.list_queries(CAMPAIGN)
    assert q.status == "failed" and q.attempts == 3
    assert "max_submit_attempts = 3" in q.error and "without a job id" in q.error
    assert failed_seen == [q.key]  # the budget guard sees the give-up in a poll outcome
    assert lab.counts["POST"] == 3  # one POST per submission: the client does not retry a 2xx
    logged = _warnings(caplog, q.key)
    assert sum("resubmitting with the same key" in m for m in logged) == 2
    assert sum("giving up" in m and CAMPAIGN in m for m in logged) == 1
    d.close()
    st.close()


def test_2xx_without_job_id_then_a_job_succeeds_after_retry(tmp_path: Path, bad_lab: Any) -> None:
    lab = bad_lab("no-id", ok_after=3)
    st = _storage(f"sqlite:///{tmp_path / 'd.db'}")
    d = _dispatcher(st, lab, QueryLimits(max_submit_attempts=3, **NO_BACKOFF))
    drive(d, st, campaign=CAMPAIGN, passes=200)
    (q,) = st.list_queries(CAMPAIGN)
    assert q.status == "succeeded" and q.values == {"y": 1.5} and q.attempts == 3
    assert lab.counts["POST"] == 3
    d.close()
    st.close()


def test_submits_of_a_restarting_driver_are_counted_in_storage(tmp_path: Path, bad_lab: Any) -> None:
    """A driver killed after each submit: every fresh dispatcher resubmits the key with no
    stored handle, and the count lives in the database, so the limit holds across processes."""
    lab = bad_lab("no-id")
    st = _storage(f"sqlite:///{tmp_path / 'd.db'}")
    for _ in range(6):
        d = _dispatcher(st, lab, QueryLimits(max_submit_attempts=4, **NO_BACKOFF))
        d.restore()
        d.dispatch()
        outcome = d.poll()
        d.close()
        if st.in_flight_count(CAMPAIGN) == 0:
            break
    (q,) = st.list_queries(CAMPAIGN)
    assert q.status == "failed" and q.attempts == 4 and "max_submit_attempts = 4" in q.error
    assert q.key in outcome.failed
    assert lab.counts["POST"] == 4
    st.close()


@pytest.mark.parametrize("mode, words", [("invalid-json", "malformed JSON"),
                                         ("5xx", "HTTP 503"),
                                         ("429", "HTTP 429"),
                                         ("hang", "Timeout")])
def test_a_job_without_final_answer_fails_at_max_job_age(
        mode: str, words: str, db_url: str, bad_lab: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    lab = bad_lab(mode)
    st = _storage(db_url, n=2)
    d = _dispatcher(st, lab, QueryLimits(max_submit_attempts=3, max_job_age_s=1.0, **NO_BACKOFF))
    passes = drive(d, st, campaign=CAMPAIGN, passes=400)
    queries = st.list_queries(CAMPAIGN)
    assert [q.status for q in queries] == ["failed", "failed"]
    for q in queries:
        assert "max_job_age_s = 1" in q.error and words in q.error, q.error
        assert q.attempts == 1  # the lab accepted the job: never resubmitted
        logged = _warnings(caplog, q.key)
        assert any("giving up" in m and CAMPAIGN in m for m in logged)
        assert any("no answer from the oracle" in m for m in logged)
    assert lab.counts["POST"] == 2
    # bounded: each pass polls each job with at most max_attempts (2) GETs
    assert 0 < lab.counts["GET"] <= 2 * 2 * passes
    assert lab.counts["cancel"] == 2  # the abandoned jobs are cancelled at the lab
    d.close()
    st.close()


def test_resubmissions_of_one_key_back_off_exponentially(tmp_path: Path, bad_lab: Any,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A fake clock: the first resubmission is immediate, then waits of base·2^(n−3)·U(0.5, 1),
    counted from when the failed submission is seen."""
    caplog.set_level(logging.WARNING)
    lab = bad_lab("no-id")
    st = _storage(f"sqlite:///{tmp_path / 'd.db'}")
    now = [0.0]
    d = _dispatcher(st, lab, QueryLimits(max_submit_attempts=5, backoff_s=10.0, backoff_max_s=15.0),
                    clock=lambda: now[0], seed=1)
    d.dispatch()
    assert lab.counts["POST"] == 1
    d.poll()
    assert lab.counts["POST"] == 2  # first resubmission at once (a lost job is the usual case)

    def posts_at(t: float) -> int:
        now[0] = t
        d.poll()
        d.dispatch()
        return lab.counts["POST"]

    assert posts_at(0.0) == 2  # submission 3 scheduled 5-10 s out
    assert posts_at(4.99) == 2
    assert posts_at(10.01) == 3
    assert posts_at(10.02) == 3  # its failure seen: submission 4 waits 15 s cap · U(0.5, 1)
    assert posts_at(10.02 + 7.49) == 3
    assert posts_at(10.02 + 15.01) == 4
    waits = [m for m in _warnings(caplog, f"{CAMPAIGN}:0:0") if "resubmitting in" in m]
    assert len(waits) == 2 and all(CAMPAIGN in m for m in waits)
    d.close()
    st.close()


def test_query_limits_validate() -> None:
    for bad in ({"max_submit_attempts": 0}, {"max_submit_attempts": True},
                {"max_job_age_s": float("inf")}, {"max_job_age_s": 0.0},
                {"backoff_s": float("nan")}, {"backoff_max_s": -1.0}):
        with pytest.raises(ValueError):
            QueryLimits(**bad)  # type: ignore[arg-type]
