"""The pull API over real HTTP: idempotent claims and reports, caps and defaults from the
campaign's `[oracle]`, keys confined to their campaign, late reports, and campaigns that hand
out no work."""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import numpy as np
from sqlalchemy import func, select

from optimizer.campaign.config_io import parse_config
from optimizer.service.metrics import sample
from service_helpers import Live, Tokens, bearer, create, queue_round
from storage import Storage
from storage.clock import db_now
from storage.models import OracleQuery

Make = Callable[..., dict[str, Any]]


def _claim(client: httpx.Client, token: str, campaign: str = "pull-a", **body: Any
           ) -> httpx.Response:
    return client.post(f"/v1/campaigns/{campaign}/claims", headers=bearer(token),
                       json={"client_id": "lab-1", "request_id": "r1", **body})


def _report(client: httpx.Client, token: str, key: str, campaign: str = "pull-a", **body: Any
            ) -> httpx.Response:
    return client.post(f"/v1/campaigns/{campaign}/reports", headers=bearer(token),
                       json={"client_id": "lab-1", "key": key, **body})


def test_claims_and_reports_are_idempotent(client: httpx.Client, server: Live, tokens: Tokens,
                                           storage: Storage, make_config: Make) -> None:
    assert create(client, tokens.admin, make_config("pull-a")).status_code == 201
    keys = queue_round(storage, "pull-a")
    first = _claim(client, tokens.lab_a, max_items=2)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["campaign_status"] == "active"
    assert [i["key"] for i in body["items"]] == keys[:2]
    item = body["items"][0]
    assert (item["shape"], item["round"], item["candidate"], item["attempts"]) == ([2], 0, 0, 1)
    stored = storage.get_query(keys[0])
    assert stored.design is not None
    np.testing.assert_array_equal(np.asarray(item["design"], dtype=np.float32), stored.design)
    retry = _claim(client, tokens.lab_a, max_items=2).json()
    assert [(i["key"], i["attempts"]) for i in retry["items"]] == [(k, 1) for k in keys[:2]]
    assert storage.query_counts("pull-a")["dispatched"] == 2  # the retry took nothing new

    assert _report(client, tokens.lab_a, keys[0], values={"y": 1.5}).json() == {"stored": True}
    assert _report(client, tokens.lab_a, keys[0], values={"y": 1.5}).json() == {"stored": False}
    other = _report(client, tokens.lab_a, keys[0], values={"y": 9.0})
    assert other.status_code == 409 and "already succeeded" in other.json()["detail"]
    failed = _report(client, tokens.lab_a, keys[1], error="sample spilled", noise=None)
    assert failed.json() == {"stored": True}
    assert storage.get_query(keys[1]).error == "sample spilled"
    for bad in ({"values": {"y": 1.0}, "error": "x"}, {}, {"values": {"y": "nan"}}):
        r = _report(client, tokens.lab_a, keys[2], **bad)
        assert r.status_code == 422, (bad, r.text)
    assert sample(server.metrics, "tiltloop_pull_items_total", {"action": "claimed"}) == 4
    assert sample(server.metrics, "tiltloop_pull_items_total", {"action": "reported"}) == 2
    assert [q.status for q in storage.list_queries("pull-a")] == \
        ["succeeded", "failed", "pending", "pending"]


def test_claims_follow_the_campaign_oracle_settings(client: httpx.Client, tokens: Tokens,
                                                     storage: Storage, make_config: Make) -> None:
    data = make_config("pull-a", oracle={"kind": "pull", "max_claim_items": 3, "lease_s": 120})
    assert create(client, tokens.admin, data).status_code == 201
    queue_round(storage, "pull-a", num=6, selected=(0, 1, 2, 3, 4))
    before = datetime.now(timezone.utc)
    items = _claim(client, tokens.lab_a, max_items=50).json()["items"]
    assert len(items) == 3  # capped by oracle.max_claim_items
    expires = datetime.fromisoformat(items[0]["lease_expires_at"])
    if expires.tzinfo is None:  # SQLite keeps naive UTC
        expires = expires.replace(tzinfo=timezone.utc)
    assert timedelta(seconds=100) < expires - before < timedelta(seconds=140)
    short = _claim(client, tokens.lab_a, request_id="r2", max_items=1, lease_s=5).json()["items"]
    expires = datetime.fromisoformat(short[0]["lease_expires_at"]).replace(tzinfo=timezone.utc)
    assert expires - before < timedelta(seconds=30)
    for bad in ({"max_items": 0}, {"lease_s": -1}, {"client_id": ""}, {"extra": 1}):
        assert _claim(client, tokens.lab_a, **bad).status_code == 422, bad


def test_a_key_of_another_campaign_is_not_found(client: httpx.Client, tokens: Tokens,
                                                storage: Storage, make_config: Make) -> None:
    for name in ("pull-a", "pull-b"):
        assert create(client, tokens.admin, make_config(name)).status_code == 201
    b_keys = queue_round(storage, "pull-b")
    [item] = _claim(client, tokens.lab_b, "pull-b").json()["items"]
    assert item["key"] == b_keys[0]
    # lab A's token, on A's route, with B's key: as if the key did not exist
    stolen = _report(client, tokens.lab_a, b_keys[0], values={"y": 1.0})
    assert stolen.status_code == 404
    assert stolen.json() == {"detail": f"query {b_keys[0]!r} is not a query of campaign 'pull-a'"}
    ghost = _report(client, tokens.lab_a, "pull-a:0:0", values={"y": 1.0})
    assert ghost.status_code == 404
    # and B's route with A's token is refused before anything is read
    assert _report(client, tokens.lab_a, b_keys[0], "pull-b", values={"y": 1.0}).status_code == 403
    assert storage.get_query(b_keys[0]).status == "dispatched"
    assert _report(client, tokens.lab_b, b_keys[0], "pull-b",
                   values={"y": 1.0}).json() == {"stored": True}


def _wait_expired(storage: Storage, key: str) -> None:
    """Until the key's lease has expired by the database clock."""
    deadline = time.monotonic() + 5
    while True:
        with storage.session() as session:
            live = session.scalar(select(func.count()).select_from(OracleQuery).where(
                OracleQuery.idempotency_key == key, OracleQuery.lease_expires_at >= db_now()))
        if not live:
            return
        assert time.monotonic() < deadline, f"lease of {key} still live after 5 s"
        time.sleep(0.05)


def test_late_reports(client: httpx.Client, tokens: Tokens, storage: Storage,
                      make_config: Make) -> None:
    assert create(client, tokens.admin, make_config("pull-a")).status_code == 201
    keys = queue_round(storage, "pull-a", selected=(0, 1))
    # lab-1's lease expires and nobody else claims the item: its result is still taken
    [mine] = _claim(client, tokens.lab_a, max_items=1, lease_s=0.3).json()["items"]
    _wait_expired(storage, mine["key"])
    assert _report(client, tokens.lab_a, mine["key"], values={"y": 1.0}).json() == {"stored": True}
    # lab-1's lease expires and lab-2 claims the item: lab-1's late result is refused
    [lost] = _claim(client, tokens.lab_a, request_id="r2", lease_s=0.3).json()["items"]
    assert lost["key"] == keys[1]
    _wait_expired(storage, lost["key"])
    taken = _claim(client, tokens.lab_a, client_id="lab-2").json()["items"]
    assert [i["key"] for i in taken] == [keys[1]]
    # lab-1 retrying its old claim gets nothing it no longer holds
    assert _claim(client, tokens.lab_a, request_id="r2").json()["items"] == []
    late = _report(client, tokens.lab_a, keys[1], values={"y": 2.0})
    assert late.status_code == 409 and "another client" in late.json()["detail"]
    assert _report(client, tokens.lab_a, keys[1], client_id="lab-2",
                   values={"y": 3.0}).json() == {"stored": True}
    assert storage.get_query(keys[1]).values == {"y": 3.0}


def test_campaigns_that_hand_out_no_work(client: httpx.Client, tokens: Tokens, storage: Storage,
                                         make_config: Make) -> None:
    pushed = make_config("http-a", oracle={"kind": "http", "base_url": "http://127.0.0.1:9"})
    # created in storage directly: preflight would try to reach the (absent) lab
    storage.create_campaign("http-a", parse_config(pushed).to_json_dict(), budget=12)
    queue_round(storage, "http-a")
    r = _claim(client, tokens.admin, "http-a")
    assert r.status_code == 409 and "not 'pull'" in r.json()["detail"]
    assert storage.query_counts("http-a")["pending"] == 4

    assert create(client, tokens.admin, make_config("pull-a")).status_code == 201
    queue_round(storage, "pull-a")
    admin = bearer(tokens.admin)
    assert client.post("/v1/campaigns/pull-a/pause", headers=admin).status_code == 200
    assert _claim(client, tokens.lab_a).json() == {"campaign_status": "paused", "items": []}
    assert client.post("/v1/campaigns/pull-a/cancel", headers=admin).status_code == 200
    assert _claim(client, tokens.lab_a, request_id="r2").json() == \
        {"campaign_status": "cancelled", "items": []}
    assert storage.query_counts("pull-a")["dispatched"] == 0
    assert _claim(client, tokens.admin, "ghost").status_code == 404


def test_a_report_without_every_recorded_output_is_refused(client: httpx.Client, tokens: Tokens,
                                                           storage: Storage, make_config: Make) -> None:
    """A pull lab's result lacking an objective or a constraint output is refused (422 naming
    it), nothing stored, the item still the client's to report again, as a pushed oracle's
    result missing an output fails in the dispatcher."""
    data = make_config("pull-a", constraints=[{"name": "tox", "op": "<=", "bound": 0.2}])
    assert create(client, tokens.admin, data).status_code == 201
    keys = queue_round(storage, "pull-a")
    assert _claim(client, tokens.lab_a, max_items=1).status_code == 200
    for values, lacking in (({"y": 1.5}, "`values.tox`"), ({"tox": 0.1}, "`values.y`")):
        r = _report(client, tokens.lab_a, keys[0], values=values)
        assert r.status_code == 422 and lacking in r.json()["detail"], r.text
        assert storage.get_query(keys[0]).status == "dispatched"
    ok = _report(client, tokens.lab_a, keys[0], values={"y": 1.5, "tox": 0.1})
    assert ok.json() == {"stored": True}
    assert storage.get_query(keys[0]).values == {"y": 1.5, "tox": 0.1}
