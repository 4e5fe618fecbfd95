"""Each bad-reply mode of a lab (``tests/faults/bad_lab.py``) ends every query in
success-after-retry or failure-with-reason within the dispatcher's limits: the requests the lab
receives are bounded by ``max_submit_attempts`` × the client's ``max_attempts``, the stored error
names the cause (and stays small), and a WARNING names the campaign and the key.

Real parts: the HTTP oracle over real sockets, the dispatcher, SQLite storage."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faults.bad_lab import MODES, VALUE, BadLab
from faults.bad_lab_drive import CAMPAIGN, SUBMITS, TRIES, dispatcher, drive, reply_storage
from storage import Storage

#: mode -> words the stored error must contain when the mode never stops
REASONS: dict[str, str] = {
    "nan": "nan; an oracle result must be finite",
    "inf": "inf; an oracle result must be finite",
    "string": "must be a number, got str",
    "missing": "values must be an object",
    "no-status": "status None",
    "wrong-key": "belongs to key 'someone-else:0:0'",
    "no-id": "without a job id",
    "429": "HTTP 429",
    "hang": "max_job_age_s",
    "huge": "x" * 100,
    "endless": "reply not complete",
    "html": "malformed JSON",
    "invalid-json": "malformed JSON",
}
#: modes a lab recovers from (a transient fault): success after retry once it answers correctly
TRANSIENT = ("no-id", "429", "hang", "endless", "html", "invalid-json")
MAX_ERROR_CHARS = 10_000  # a stored error is a message, not a copy of a 10 MB body


@pytest.fixture()
def storage(tmp_path: Path) -> Iterator[Storage]:
    st = reply_storage(f"sqlite:///{tmp_path / 'replies.db'}")
    yield st
    st.close()


def _check_bounded(lab: BadLab, passes: int) -> None:
    assert max(lab.posts_by_key.values()) <= SUBMITS * TRIES, dict(lab.posts_by_key)
    assert lab.counts["GET"] <= 2 * TRIES * passes


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_lab_that_keeps_answering_badly_fails_each_query_with_its_reason(
        mode: str, storage: Storage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with BadLab(mode, retry_after="3600") as lab:  # Retry-After beyond the client's cap
        d = dispatcher(storage, lab.url)
        passes = drive(d, storage)
        d.close()
    queries = storage.list_queries(CAMPAIGN)
    assert [q.status for q in queries] == ["failed", "failed"], [(q.status, q.error) for q in queries]
    for q in queries:
        assert q.error and REASONS[mode] in q.error, q.error[:300]
        assert len(q.error) <= MAX_ERROR_CHARS, len(q.error)
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(CAMPAIGN in m and q.key in m for m in logged), (mode, q.key, logged[-5:])
    _check_bounded(lab, passes)


@pytest.mark.parametrize("mode", TRANSIENT)
def test_a_lab_that_recovers_gets_each_query_done_after_retry(
        mode: str, storage: Storage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with BadLab(mode, ok_after=2) as lab:
        d = dispatcher(storage, lab.url)
        passes = drive(d, storage)
        d.close()
    queries = storage.list_queries(CAMPAIGN)
    assert [(q.status, q.values) for q in queries] == [("succeeded", {"y": VALUE})] * 2, \
        [(q.status, q.error) for q in queries]
    assert lab.spoiled == 2
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("retrying" in m or "resubmitting" in m for m in logged), logged
    _check_bounded(lab, passes)


def _retry_after_case(value: str) -> Any:
    return pytest.param(value, id=f"retry-after={value!r}")


@pytest.mark.parametrize("retry_after", [_retry_after_case(v) for v in
                                         ("1e308", "inf", "nan", "-5", "soon", "",
                                          "Wed, 21 Oct 2099 07:28:00 GMT")])
def test_a_429_with_any_retry_after_is_waited_within_the_cap(retry_after: str, storage: Storage) -> None:
    waits: list[float] = []
    with BadLab("429", ok_after=1, retry_after=retry_after) as lab:
        d = dispatcher(storage, lab.url)
        d.oracle.inner._sleep = waits.append  # record the client's waits instead of sleeping
        drive(d, storage)
        d.close()
    assert [q.status for q in storage.list_queries(CAMPAIGN)] == ["succeeded"] * 2
    assert waits and all(0.0 <= w <= 0.05 for w in waits), waits
