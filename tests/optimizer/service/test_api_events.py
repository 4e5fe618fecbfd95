"""The campaign event stream (Server-Sent Events) over real HTTP: events arrive live, a
reconnect with Last-Event-ID gets only newer ones, status frames follow the counts, keepalives
fill silence, and every stream ends after max_s."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from optimizer.service import routes_events
from service_helpers import Tokens, bearer, create, queue_round
from storage import Storage

Make = Callable[..., dict[str, Any]]


def frames(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """SSE frames parsed from a line iterator: ``{"id", "event", "data", "comment"}``."""
    frame: dict[str, Any] = {}
    for line in lines:
        if not line:
            if frame:
                yield frame
            frame = {}
        elif line.startswith(":"):
            frame["comment"] = line[1:].strip()
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            frame[field] = json.loads(value) if field == "data" else value
    if frame:
        yield frame


def _until(stream: Iterator[dict[str, Any]], event: str) -> dict[str, Any]:
    for f in stream:
        if f.get("event") == event:
            return f
    raise AssertionError(f"the stream ended before an {event!r} event")


@pytest.fixture()
def campaign(client: httpx.Client, tokens: Tokens, make_config: Make) -> str:
    assert create(client, tokens.admin, make_config("pull-a")).status_code == 201
    return "pull-a"


def test_events_arrive_live_and_a_reconnect_resumes(client: httpx.Client, tokens: Tokens,
                                                    storage: Storage, campaign: str) -> None:
    url = f"/v1/campaigns/{campaign}/events"
    with client.stream("GET", url, params={"max_s": 10}, headers=bearer(tokens.lab_a)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        stream = frames(r.iter_lines())
        first = _until(stream, "status")  # the live tail starts with the status, no history
        assert first["data"]["status"] == "active" and "id" not in first
        storage.log_event(campaign, "test.ping", {"n": 1})
        ping = _until(stream, "test.ping")
        assert ping["data"]["payload"] == {"n": 1} and int(ping["id"]) == ping["data"]["id"]
        queue_round(storage, campaign)  # a round.recorded event, and four queued queries
        # a status frame is read after the events of its poll, so it may run ahead of them
        seen: set[str] = set()
        for f in stream:
            if f.get("event") == "status" and f["data"]["queries"]["pending"] == 4:
                assert f["data"]["in_flight"] == 4
                seen.add("status")
            elif f.get("event") == "round.recorded":
                seen.add("round.recorded")
            if len(seen) == 2:
                break
        storage.log_event(campaign, "test.pong", {"n": 2})
        assert _until(stream, "test.pong")["data"]["payload"] == {"n": 2}
    assert seen == {"status", "round.recorded"}
    storage.log_event(campaign, "test.after", {"n": 3})
    with client.stream("GET", url, params={"max_s": 1.5},
                       headers={**bearer(tokens.read), "Last-Event-ID": ping["id"]}) as r:
        kinds = [f["event"] for f in frames(r.iter_lines()) if "event" in f]
    assert kinds[:4] == ["round.recorded", "test.pong", "test.after", "status"]
    assert "test.ping" not in kinds
    everything = client.get(url, params={"after": 0, "max_s": 0.5}, headers=bearer(tokens.read))
    kinds = [f["event"] for f in frames(iter(everything.text.splitlines())) if "event" in f]
    assert kinds[0] == "campaign.created" and kinds.count("test.ping") == 1


def test_a_stream_ends_after_max_s_with_keepalives(client: httpx.Client, tokens: Tokens,
                                                   campaign: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routes_events, "KEEPALIVE_S", 0.3)  # the server runs in this process
    start = time.monotonic()
    r = client.get(f"/v1/campaigns/{campaign}/events", params={"max_s": 1.2},
                   headers=bearer(tokens.read))
    elapsed = time.monotonic() - start
    assert r.status_code == 200 and 1.2 <= elapsed < 4, elapsed
    got = list(frames(iter(r.text.splitlines())))
    comments = [f["comment"] for f in got if "comment" in f]
    assert "keepalive" in comments
    assert comments[-1].startswith("stream ends after max_s=1.2")
    assert got[0] == {"retry": "1000"}


def test_bad_requests_are_refused_before_streaming(client: httpx.Client, tokens: Tokens,
                                                   campaign: str) -> None:
    read = bearer(tokens.read)
    assert client.get("/v1/campaigns/ghost/events", headers=read).status_code == 404
    for params, headers in (({"max_s": 0}, {}), ({"max_s": 4000}, {}), ({"after": -1}, {}),
                            ({}, {"Last-Event-ID": "abc"})):
        r = client.get(f"/v1/campaigns/{campaign}/events", params=params,
                       headers={**read, **headers})
        assert r.status_code == 422, (params, headers, r.text)
