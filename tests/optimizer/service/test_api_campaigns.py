"""`/v1/campaigns` over real HTTP: create (validated before any write, idempotent, conflicts),
list / get, operations, rounds / queries / top / export, and names that must never reach SQL."""
from __future__ import annotations

import io
import json
import typing
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest

from optimizer.campaign.config_io import dump_toml, parse_config
from optimizer.service.routes_results import QueryStatus
from service_helpers import Tokens, bearer, create, queue_round
from storage import Storage
from storage.models import QUERY_STATUSES

Make = Callable[..., dict[str, Any]]


def test_query_status_filter_matches_the_storage_statuses() -> None:
    assert typing.get_args(QueryStatus) == QUERY_STATUSES


def test_create_is_validated_first_idempotent_and_conflicts(
        client: httpx.Client, tokens: Tokens, storage: Storage, make_config: Make) -> None:
    data = make_config("pull-a")
    first = create(client, tokens.admin, data)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["created"] is True
    assert body["campaign"]["name"] == "pull-a"
    assert body["campaign"]["status"] == "active"
    assert body["campaign"]["oracle_kind"] == "pull"
    assert body["campaign"]["config_version"] == 1
    # the same config again, as JSON and as TOML: 200, nothing new
    again = create(client, tokens.admin, data)
    assert (again.status_code, again.json()["created"]) == (200, False)
    toml = dump_toml(parse_config(data))
    as_toml = client.post("/v1/campaigns", json={"toml": toml}, headers=bearer(tokens.admin))
    assert as_toml.status_code == 200, as_toml.text
    # a different config under the same name: 409 naming the field
    other = create(client, tokens.admin, make_config("pull-a", budget={"total": 16}))
    assert other.status_code == 409
    assert "budget.total" in other.json()["detail"]
    assert [c.name for c in storage.list_campaigns()] == ["pull-a"]


@pytest.mark.parametrize(("body", "needle"), [
    ({"config": {"sampler": {"alpha": -1.0}}}, "sampler.alpha"),
    ({"config": {"prior": {"name": "/nonexistent/prior"}}}, "prior.name"),
    ({"config": {"oracle": {"kind": "carrier-pigeon"}}}, "oracle.kind"),
    ({"toml": "name = 'bad'\n[sampler\n"}, "not valid TOML"),
    ({"toml": "x = 1", "config": {}}, "either as `toml`"),
    ({}, "either as `toml`"),
])
def test_a_bad_config_is_refused_before_any_write(
        client: httpx.Client, tokens: Tokens, storage: Storage, make_config: Make,
        body: dict[str, Any], needle: str) -> None:
    if "config" in body and "toml" not in body:
        base = make_config("bad-1")
        body = {"config": {**base, **{k: {**base.get(k, {}), **v}
                                      for k, v in body["config"].items()}}}
    r = client.post("/v1/campaigns", json=body, headers=bearer(tokens.admin))
    assert r.status_code == 422, r.text
    assert needle in json.dumps(r.json()["detail"])
    assert storage.list_campaigns() == []


def test_get_list_and_operations(client: httpx.Client, tokens: Tokens, storage: Storage,
                                 make_config: Make) -> None:
    admin = bearer(tokens.admin)
    assert create(client, tokens.admin, make_config("pull-a")).status_code == 201
    keys = queue_round(storage, "pull-a")
    listed = client.get("/v1/campaigns", headers=bearer(tokens.read)).json()["items"]
    assert [(c["name"], c["in_flight"], c["budget"]) for c in listed] == [("pull-a", 4, 12)]
    one = client.get("/v1/campaigns/pull-a", headers=bearer(tokens.lab_a)).json()
    assert (one["status"], one["rounds"], one["queries"]["pending"]) == ("active", 1, 4)
    assert one["lease"] is None and one["failures"] == [] and one["best"] is None

    paused = client.post("/v1/campaigns/pull-a/pause", json={"reason": "lab maintenance"},
                         headers=admin)
    assert (paused.json()["status"], paused.json()["previous_status"]) == ("paused", "active")
    assert client.get("/v1/campaigns/pull-a",
                      headers=admin).json()["paused_reason"] == "lab maintenance"
    assert client.post("/v1/campaigns/pull-a/pause", headers=admin).status_code == 200  # again
    resumed = client.post("/v1/campaigns/pull-a/resume", headers=admin).json()
    assert (resumed["status"], resumed["previous_status"]) == ("active", "paused")

    budget = client.post("/v1/campaigns/pull-a/budget", json={"total": 20}, headers=admin)
    assert budget.status_code == 200, budget.text
    assert (budget.json()["config_version"], budget.json()["changed"]) == (2, ["budget.total"])
    same = client.post("/v1/campaigns/pull-a/budget", json={"total": 20}, headers=admin)
    assert (same.status_code, same.json()["config_version"]) == (200, 2)  # a retry: no version
    too_low = client.post("/v1/campaigns/pull-a/budget", json={"total": 3}, headers=admin)
    assert (too_low.status_code, "already spent 4" in too_low.json()["detail"]) == (422, True)

    new = make_config("pull-a", budget={"total": 20}, sampler={"alpha": 0.25})
    changed = client.post("/v1/campaigns/pull-a/config",
                          json={"toml": dump_toml(parse_config(new)), "note": "cooler"},
                          headers=admin)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["config_version"], changed.json()["changed"]) == (3, ["sampler.alpha"])
    assert storage.config_versions("pull-a")[-1].note == "cooler"
    unchanged = client.post("/v1/campaigns/pull-a/config", json={"config": new}, headers=admin)
    assert unchanged.status_code == 409 and "equals the stored one" in unchanged.json()["detail"]
    renamed = client.post("/v1/campaigns/pull-a/config", json={"config": make_config("pull-b")},
                          headers=admin)
    assert renamed.status_code == 409 and "cannot change" in renamed.json()["detail"]
    bad = client.post("/v1/campaigns/pull-a/config",
                      json={"config": {**new, "budget": {"total": 0}}}, headers=admin)
    assert bad.status_code == 422 and "budget.total" in bad.json()["detail"]

    cancelled = client.post("/v1/campaigns/pull-a/cancel", headers=admin).json()
    assert cancelled["status"] == "cancelled" and sorted(cancelled["never_sent"]) == sorted(keys)
    assert client.post("/v1/campaigns/pull-a/pause", headers=admin).status_code == 409
    assert create(client, tokens.admin, new).status_code == 409  # cancelled: never again
    for missing in ("/v1/campaigns/ghost", "/v1/campaigns/ghost/rounds"):
        r = client.get(missing, headers=admin)
        assert (r.status_code, r.json()) == (404, {"detail": "campaign 'ghost' not found"})
    assert client.post("/v1/campaigns/ghost/cancel", headers=admin).status_code == 404


def test_rounds_queries_top_and_export(client: httpx.Client, tokens: Tokens, storage: Storage,
                                       make_config: Make) -> None:
    read = bearer(tokens.read)
    assert create(client, tokens.admin, make_config("pull-a")).status_code == 201
    keys = queue_round(storage, "pull-a")
    claimed = storage.claim_work("pull-a", "lab-1", "r1", 2, 60.0)
    for q, y in zip(claimed, (0.5, 2.5)):
        assert storage.report_work(q.key, "lab-1", values={"y": y})

    rounds = client.get("/v1/campaigns/pull-a/rounds", headers=read).json()["items"]
    assert [(r["index"], r["num_candidates"], r["query_keys"]) for r in rounds] == [(0, 6, keys)]

    page = client.get("/v1/campaigns/pull-a/queries", params={"limit": 3}, headers=read).json()
    assert (page["total"], page["next_offset"], [q["key"] for q in page["items"]]) == \
        (4, 3, keys[:3])
    rest = client.get("/v1/campaigns/pull-a/queries", params={"offset": 3, "limit": 3},
                      headers=read).json()
    assert ([q["key"] for q in rest["items"]], rest["next_offset"]) == (keys[3:], None)
    done = client.get("/v1/campaigns/pull-a/queries",
                      params=[("status", "succeeded"), ("status", "failed")], headers=read).json()
    assert [(q["key"], q["values"]) for q in done["items"]] == \
        [(keys[0], {"y": 0.5}), (keys[1], {"y": 2.5})]
    for params in ({"status": "bogus"}, {"limit": 5000}, {"offset": -1}):
        assert client.get("/v1/campaigns/pull-a/queries", params=params,
                          headers=read).status_code == 422

    top = client.get("/v1/campaigns/pull-a/top", params={"n": 1}, headers=read).json()
    assert (top["objective"], top["direction"]) == ("y", "maximize")
    [best] = top["items"]
    assert (best["key"], best["value"], best["shape"]) == (keys[1], 2.5, [2])
    np.testing.assert_array_equal(np.asarray(best["design"], dtype=np.float32), claimed[1].design)

    csv = client.get("/v1/campaigns/pull-a/export", headers=read)
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.headers["content-disposition"] == 'attachment; filename="pull-a.csv"'
    assert len(csv.text.splitlines()) == 1 + 4
    as_json = client.get("/v1/campaigns/pull-a/export", params={"format": "json"}, headers=read)
    assert as_json.headers["content-type"] == "application/json"
    assert [row["key"] for row in as_json.json()["rows"]] == keys
    npy = client.get("/v1/campaigns/pull-a/export",
                     params={"format": "npy", "status": "succeeded"}, headers=read)
    assert npy.headers["content-disposition"] == 'attachment; filename="pull-a.npy"'
    designs = np.load(io.BytesIO(npy.content), allow_pickle=False)
    assert designs.shape == (2, 2) and designs.dtype == np.float32
    np.testing.assert_array_equal(designs[1], claimed[1].design)
    assert client.get("/v1/campaigns/pull-a/export", params={"format": "xls"},
                      headers=read).status_code == 422


HOSTILE = ["x'; DROP TABLE campaign;--", "../etc", "a/b", "%2e%2e", "..", "-x", "a b",
           "c" * 129, "pull-a'--"]


@pytest.mark.parametrize("quoted", [True, False])
def test_hostile_campaign_names_never_reach_sql(client: httpx.Client, tokens: Tokens,
                                                storage: Storage, make_config: Make,
                                                quoted: bool) -> None:
    admin = bearer(tokens.admin)
    assert create(client, tokens.admin, make_config("pull-a")).status_code == 201
    for name in HOSTILE:
        path = quote(name, safe="") if quoted else name
        for method, suffix in (("GET", ""), ("GET", "/queries"), ("POST", "/pause"),
                               ("POST", "/claims"), ("GET", "/events")):
            r = client.request(method, f"/v1/campaigns/{path}{suffix}", headers=admin,
                               json={"client_id": "c", "request_id": "r"})
            assert r.status_code in (404, 422), (name, suffix, r.status_code, r.text)
            if r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "name"]:
                assert "campaign name is invalid" in r.json()["detail"][0]["msg"]
    # a config named with SQL is refused by the config's own validation
    evil = create(client, tokens.admin, make_config("x'; DROP TABLE campaign;--"))
    assert evil.status_code == 422 and "campaign name" in evil.json()["detail"]
    assert [(c.name, c.status) for c in storage.list_campaigns()] == [("pull-a", "active")]
