"""``GET /v1/campaigns/NAME/top`` says whether each result is feasible under the campaign's
``[[constraints]]`` (feasible results rank first), and ``null`` without constraints; the field is
in the OpenAPI document. Real service over HTTP, pull labs reporting through the API."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from optimizer.service.openapi import document
from service_helpers import Tokens, bearer, create, queue_round
from storage import Storage

Make = Callable[..., dict[str, Any]]


def _answer(client: httpx.Client, token: str, campaign: str,
            values: list[dict[str, float]]) -> list[str]:
    claimed = client.post(f"/v1/campaigns/{campaign}/claims", headers=bearer(token),
                          json={"client_id": "lab-1", "request_id": "r1",
                                "max_items": len(values)})
    assert claimed.status_code == 200, claimed.text
    keys = [i["key"] for i in claimed.json()["items"]]
    for key, v in zip(keys, values, strict=True):
        r = client.post(f"/v1/campaigns/{campaign}/reports", headers=bearer(token),
                        json={"client_id": "lab-1", "key": key, "values": v})
        assert r.json() == {"stored": True}, r.text
    return keys


def test_top_reports_feasibility(client: httpx.Client, tokens: Tokens, storage: Storage,
                                 make_config: Make) -> None:
    data = make_config("pull-a", constraints=[{"name": "tox", "op": "<=", "bound": 0.2}])
    assert create(client, tokens.admin, data).status_code == 201
    queue_round(storage, "pull-a")
    # the best y is infeasible (tox above its bound): it ranks after the feasible ones
    keys = _answer(client, tokens.lab_a, "pull-a", [{"y": 9.0, "tox": 0.5}, {"y": 1.0, "tox": 0.1},
                                                    {"y": 2.0, "tox": 0.2}])
    top = client.get("/v1/campaigns/pull-a/top", params={"n": 3}, headers=bearer(tokens.admin))
    assert top.status_code == 200, top.text
    assert [(i["key"], i["feasible"]) for i in top.json()["items"]] == [
        (keys[2], True), (keys[1], True), (keys[0], False)]

    assert create(client, tokens.admin, make_config("pull-b")).status_code == 201
    queue_round(storage, "pull-b")
    _answer(client, tokens.lab_b, "pull-b", [{"y": 1.0}])
    [item] = client.get("/v1/campaigns/pull-b/top", headers=bearer(tokens.read)).json()["items"]
    assert item["feasible"] is None


def test_the_openapi_document_has_the_feasible_field() -> None:
    schema = document()["components"]["schemas"]["TopItem"]["properties"]["feasible"]
    assert {t.get("type") for t in schema["anyOf"]} == {"boolean", "null"}
