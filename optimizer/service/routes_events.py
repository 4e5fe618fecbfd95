"""`GET /v1/campaigns/{name}/events`: the campaign's event log as Server-Sent Events.

Each stored event is one frame ``id: <event id>`` / ``event: <kind>`` / ``data: <json>``; a
``status`` frame (no id: it is not in the log) carries the campaign's status and query counts
when the stream starts and whenever they change. The stream starts after the ``Last-Event-ID``
header (what a reconnecting ``EventSource`` sends), else after ``?after=``, else at the live
tail. It polls the database every ``POLL_S`` (in a worker thread: storage blocks), sends a
``: keepalive`` comment after ``KEEPALIVE_S`` of silence, and ends after ``max_s`` (so no wait
is unbounded; the client reconnects with its last id). A client that goes away ends it at once
(Starlette cancels the generator on ``http.disconnect``).
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from optimizer.service.auth import need_read
from optimizer.service.views import CampaignName, not_found, storage_of
from storage import EventRecord, Storage
from storage.errors import NotFound, StorageError

router = APIRouter(prefix="/v1/campaigns/{name}", tags=["events"])
log = logging.getLogger(__name__)

#: Seconds between two reads of the event log.
POLL_S = 0.5
#: Seconds of silence before a keepalive comment (proxies drop idle connections).
KEEPALIVE_S = 15.0
#: Events read per database round trip.
BATCH = 500
#: The reconnection delay a browser's EventSource is told (milliseconds).
RETRY_MS = 1000
MAX_STREAM_S = 3600.0


def frame(kind: str, data: dict[str, Any], event_id: int | None = None) -> str:
    """One SSE frame (the kind is made single-line: a newline would end the field)."""
    head = "" if event_id is None else f"id: {event_id}\n"
    kind = kind.replace("\r", " ").replace("\n", " ")
    return f"{head}event: {kind}\ndata: {json.dumps(data, default=str, sort_keys=True)}\n\n"


def event_frame(e: EventRecord) -> str:
    """The frame of one stored event."""
    return frame(e.kind, {"id": e.id, "kind": e.kind, "actor": e.actor, "payload": e.payload,
                          "created_at": e.created_at.isoformat()}, e.id)


def status_data(storage: Storage, name: str) -> dict[str, Any]:
    """The campaign's status and query counts (two small queries; no history is read)."""
    counts = storage.query_counts(name)
    return {"campaign": name, "status": storage.load_campaign(name).status, "queries": counts,
            "in_flight": counts["pending"] + counts["dispatched"] + counts["running"]}


async def event_stream(storage: Storage, name: str, cursor: int, max_s: float
                       ) -> AsyncIterator[str]:
    """The frames of campaign ``name``'s events after id ``cursor``, for ``max_s`` seconds."""
    deadline = time.monotonic() + max_s
    yield f"retry: {RETRY_MS}\n\n"
    last_sent = time.monotonic()
    shown: dict[str, Any] | None = None
    try:
        while True:
            batch = await anyio.to_thread.run_sync(
                partial(storage.list_events, name, after_id=cursor, limit=BATCH))
            for e in batch:
                yield event_frame(e)
                cursor = e.id
            if batch or shown is None:  # every change of status or counts writes an event
                now_status = await anyio.to_thread.run_sync(status_data, storage, name)
                if now_status != shown:
                    yield frame("status", now_status)
                    shown = now_status
                last_sent = time.monotonic()
            now = time.monotonic()
            if now >= deadline:
                yield f": stream ends after max_s={max_s:g}; reconnect with Last-Event-ID\n\n"
                return
            if len(batch) == BATCH:
                continue  # a backlog: read on without waiting
            if now - last_sent >= KEEPALIVE_S:
                yield ": keepalive\n\n"
                last_sent = now
            await anyio.sleep(min(POLL_S, deadline - now))
    except StorageError as exc:  # the response has started: say it in the stream, then end
        log.warning("events of campaign %s: %s", name, exc)
        yield frame("error", {"detail": str(exc)})


def _cursor(last_event_id: str | None, after: int | None) -> int | None:
    if last_event_id is not None and last_event_id.strip():
        value = last_event_id.strip()
        if not value.isdigit():
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                detail=f"header Last-Event-ID: expected an event id (digits), "
                                       f"got {value[:40]!r}")
        return int(value)
    return after


@router.get("/events", response_class=StreamingResponse, dependencies=[Depends(need_read)],
            summary="The campaign's events, live, as Server-Sent Events",
            responses={200: {"description": "`text/event-stream`: one frame per event (`id`, "
                                            "`event` = kind, `data` = JSON), `status` frames, "
                                            "keepalive comments; ends after `max_s`",
                             "content": {"text/event-stream": {}}},
                       404: {"description": "no such campaign"}})
async def events(
    name: CampaignName, request: Request,
    after: Annotated[int | None, Query(ge=0, description=(
        "start after this event id (0: the whole log); default: the live tail"))] = None,
    max_s: Annotated[float, Query(gt=0, le=MAX_STREAM_S, description=(
        "seconds until the stream ends (reconnect with Last-Event-ID)"))] = 300.0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", description=(
        "resume after this event id (wins over `after`)"))] = None,
) -> StreamingResponse:
    storage = storage_of(request)
    cursor = _cursor(last_event_id, after)
    try:
        tail = await anyio.to_thread.run_sync(storage.last_event_id, name)
    except NotFound:
        raise not_found(name) from None
    return StreamingResponse(
        event_stream(storage, name, tail if cursor is None else cursor, max_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
