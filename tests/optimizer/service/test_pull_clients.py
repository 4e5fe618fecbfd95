"""16 lab clients (``tiltloop.client.PullClient``) claim and report over real HTTP on loopback,
against real Postgres, while the service loses answers (the work is done, the reply never
arrives: the client retries with the same request id) and some clients crash after claiming
(never report: their lease expires and another client claims the items). Every item is measured
at least once, stored exactly once, none is lost."""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
import uvicorn
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from optimizer.campaign.config_io import parse_config
from optimizer.campaign.service import open_storage, start_or_resume
from optimizer.service.app import create_app
from pg_schemas import postgres_schema_url
from storage import NewCandidate
from tiltloop.client import PullClient, WorkNotHeldError

ITEMS = 120


def _value(design: np.ndarray) -> float:
    return float(np.sin(design).sum())


class _LoseAnswers(BaseHTTPMiddleware):
    """After the route ran (and committed), replace 15% of pull answers with a 503."""

    def __init__(self, app, rng: random.Random) -> None:  # type: ignore[no-untyped-def]
        super().__init__(app)
        self.rng = rng
        self.lost = 0
        self.lock = threading.Lock()

    async def dispatch(self, request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        if request.url.path.endswith(("/claims", "/reports")):
            with self.lock:
                lose = self.rng.random() < 0.15
                self.lost += lose
            if lose:
                return JSONResponse({"detail": "injected: answer lost"}, status_code=503)
        return response


@pytest.fixture()
def service(pg_schema: str) -> Iterator[tuple[str, str, _LoseAnswers]]:
    url = postgres_schema_url(pg_schema)
    cfg = parse_config({
        "name": "pulled", "prior": {"name": "gmm-toy"}, "oracle": {"kind": "pull", "lease_s": 1.0},
        "objectives": [{"name": "y"}], "budget": {"q": 4, "total": ITEMS},
        "storage": {"url": url}}, "<test>")
    storage = open_storage(url, create=True)
    start_or_resume(cfg, storage, source="test")
    rng = np.random.default_rng(0)
    for r in range(ITEMS // 40):  # queued work, as the driver records it
        storage.record_round("pulled", r, alpha=1.0, oracle_name="pull",
                             candidates=[NewCandidate(rng.normal(size=2)) for _ in range(40)],
                             selected=list(range(40)))
    _, secret = storage.create_token(["lab:pulled"])
    app = create_app(storage)
    holder: dict[str, _LoseAnswers] = {}

    class _Capture(_LoseAnswers):
        def __init__(self, inner):  # type: ignore[no-untyped-def]
            super().__init__(inner, random.Random(7))
            holder["m"] = self

    app.add_middleware(_Capture)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start within 20 s"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", secret, holder["m"]
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        storage.close()


@pytest.mark.slow
def test_sixteen_lab_clients_with_crashes_and_lost_answers(service, pg_schema: str) -> None:
    base, secret, lossy = service
    measured: Counter[str] = Counter()  # what the labs paid for
    stored: Counter[str] = Counter()    # reports the service says it stored
    lock = threading.Lock()
    errors: list[str] = []
    deadline = time.monotonic() + 150

    def lab(i: int) -> None:
        crashes_left = 2 if i % 4 == 0 else 0  # every 4th client drops its first two claims
        with PullClient(base, "pulled", token=secret, client_id=f"lab-{i}", retries=8,
                        backoff_s=0.01, max_backoff_s=0.2, timeout_s=20) as client:
            idle = 0
            while time.monotonic() < deadline and idle < 40:
                items = client.claim(max_items=3)
                if not items:
                    idle += 1
                    time.sleep(0.1)
                    continue
                idle = 0
                if crashes_left:
                    crashes_left -= 1
                    continue  # crashed after claiming: never reports
                for item in items:
                    with lock:
                        measured[item.key] += 1
                    try:
                        if client.report(item.key, {"y": _value(item.design)}):
                            with lock:
                                stored[item.key] += 1
                    except WorkNotHeldError:
                        pass  # our lease expired and another client holds it now
                    except Exception as exc:  # noqa: BLE001 - reported below with the key
                        errors.append(f"{item.key}: {exc}")

    threads = [threading.Thread(target=lab, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=200)
    assert not errors, errors[:5]
    assert lossy.lost > 0, "no answer was lost: the retry path was not exercised"
    with open_storage(postgres_schema_url(pg_schema), create=False) as st:
        done = st.list_queries("pulled", statuses=("succeeded",), with_design=True)
        counts = st.query_counts("pulled")
        finals = Counter(e.payload["key"] for e in st.list_events("pulled", kind="query.transition")
                         if e.payload.get("to") == "succeeded")
        expired = [e for e in st.list_events("pulled", kind="query.transition")
                   if e.payload.get("reason") == "pull lease expired"]
    assert counts["succeeded"] == ITEMS, counts  # none lost
    assert all(measured[q.key] >= 1 for q in done)  # every item measured at least once
    assert set(finals.values()) == {1} and len(finals) == ITEMS  # stored exactly once each
    assert all(n <= 1 for n in stored.values())  # no client was told "stored" twice for a key
    for q in done:
        assert q.values == {"y": pytest.approx(_value(q.design))}
    assert expired, "no crashed claim was reclaimed after its lease expired"
