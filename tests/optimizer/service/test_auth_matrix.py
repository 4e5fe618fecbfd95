"""Every route of the app × {no token, wrong scope, right scope} → 401 / 403 / its success, over
real HTTP. Routes are enumerated from ``app.routes`` and their scope read from their
dependencies, so a new route is covered (and must get an example request below) automatically.
Secrets never appear in a response or a log line."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from optimizer.service.auth import need_admin, need_lab, need_read
from service_helpers import Live, Tokens, bearer, create, queue_round
from storage import Storage

Make = Callable[..., dict[str, Any]]
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz")}
#: The dashboard's routes that carry no data: the login form, logout, static files (their own
#: checks below), and its pages, which send a visitor without a session to the login form.
DASHBOARD_OPEN = {("GET", "/login"), ("POST", "/login"), ("POST", "/logout"),
                  ("GET", "/static/vendor/plotly.min.js"), ("GET", "/static/{path:path}")}
DASHBOARD_PAGES = {("GET", "/"), ("GET", "/campaigns/{name}")}
#: Any valid token, whatever its scope (it answers with the caller's own scopes).
ANY_TOKEN = {("GET", "/v1/whoami")}
SCOPES = {need_admin: "admin", need_read: "read", need_lab: "lab"}


def _flat(app: Any) -> list[Any]:
    """Every route the app serves, included routers flattened (FastAPI >= 0.16x keeps them as
    lazy ``_IncludedRouter`` entries of ``app.routes``; ``iter_route_contexts`` resolves them)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # an older FastAPI copies included routes into app.routes
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def _scope(route: Any) -> str | None:
    """The scope dependency of a route (searched through its whole dependency tree)."""
    found = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if dep.call in SCOPES:
            found.add(SCOPES[dep.call])  # type: ignore[index]
        stack.extend(dep.dependencies)
    assert len(found) <= 1, f"{route.path} has several scope dependencies: {found}"
    return found.pop() if found else None


def routes(app: Any) -> dict[tuple[str, str], str | None]:
    """``(method, path) -> scope`` of every route the app serves (None: public)."""
    table = {}
    for route in _flat(app):
        assert isinstance(getattr(route, "original_route", route), APIRoute), \
            f"{route} is not an APIRoute: add its auth check"
        for method in route.methods:
            table[(method, route.path)] = _scope(route)
    return table


#: One request that succeeds for each protected route, in the order they are sent (state
#: changes last: cancel ends the campaign). Campaign ``pull-a`` exists with a queued round.
EXAMPLES: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET", "/metrics", {}, 200),
    ("GET", "/openapi.json", {}, 200),
    ("GET", "/v1/campaigns", {}, 200),
    ("GET", "/v1/campaigns/{name}", {}, 200),
    ("GET", "/v1/campaigns/{name}/rounds", {}, 200),
    ("GET", "/v1/campaigns/{name}/queries", {"params": {"limit": 2}}, 200),
    ("GET", "/v1/campaigns/{name}/top", {}, 200),
    ("GET", "/v1/campaigns/{name}/export", {"params": {"format": "json"}}, 200),
    ("GET", "/v1/campaigns/{name}/events", {"params": {"max_s": 0.2, "after": 0}}, 200),
    ("GET", "/v1/campaigns/{name}/dashboard", {}, 200),
    ("POST", "/v1/campaigns", {"json": "CONFIG"}, 200),
    ("POST", "/v1/campaigns/{name}/claims", {"json": {"client_id": "lab-1", "request_id": "r1"}},
     200),
    ("POST", "/v1/campaigns/{name}/reports",
     {"json": {"client_id": "lab-1", "key": "pull-a:0:0", "values": {"y": 1.0}}}, 200),
    ("POST", "/v1/campaigns/{name}/pause", {}, 200),
    ("POST", "/v1/campaigns/{name}/resume", {}, 200),
    ("POST", "/v1/campaigns/{name}/budget", {"json": {"total": 20}}, 200),
    ("POST", "/v1/campaigns/{name}/config", {"json": "CONFIG2"}, 200),
    ("POST", "/v1/campaigns/{name}/cancel", {}, 200),
]


def test_every_protected_route_has_an_example(server: Live) -> None:
    table = routes(server.app)
    assert {k for k, scope in table.items() if scope is None} == (
        PUBLIC | DASHBOARD_OPEN | DASHBOARD_PAGES | ANY_TOKEN)
    protected = {k for k, scope in table.items() if scope is not None}
    listed = {(m, p) for m, p, _, _ in EXAMPLES}
    assert protected == listed, (
        f"routes without an example request in EXAMPLES: {sorted(protected - listed)}; "
        f"examples of routes that no longer exist: {sorted(listed - protected)}")


def _wrong(scope: str, path: str, tokens: Tokens) -> list[str]:
    """Tokens that must get 403 on a route needing ``scope`` (campaign ``pull-a`` in paths)."""
    if scope == "admin":
        return [tokens.read, tokens.lab_a]
    if scope == "read":  # lab:<name> may read its own campaign only
        return [tokens.lab_b] if "{name}" in path else [tokens.lab_a]
    return [tokens.read, tokens.lab_b]


def _right(scope: str, path: str, tokens: Tokens) -> str:
    return {"admin": tokens.admin, "read": tokens.read, "lab": tokens.lab_a}[scope]


def test_every_route_by_token(server: Live, client: httpx.Client, tokens: Tokens,
                              storage: Storage, make_config: Make,
                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = make_config("pull-a")
    assert create(client, tokens.admin, config).status_code == 201
    queue_round(storage, "pull-a")
    bodies = {"CONFIG": {"config": config},
              "CONFIG2": {"config": make_config("pull-a", budget={"total": 20},
                                                sampler={"alpha": 0.25})}}
    table = routes(server.app)
    seen: list[httpx.Response] = []
    for public in sorted(PUBLIC):
        r = client.request(*public)
        assert r.status_code == 200, (public, r.text)
        seen.append(r)
    for method, template, kwargs, expected in EXAMPLES:
        scope = table[(method, template)]
        assert scope is not None
        path = template.replace("{name}", "pull-a")
        if isinstance(kwargs.get("json"), str):
            kwargs = {**kwargs, "json": bodies[kwargs["json"]]}
        where = f"{method} {template}"
        none = client.request(method, path, **kwargs)
        assert none.status_code == 401, (where, none.text)
        assert none.headers["www-authenticate"] == "Bearer"
        bogus = client.request(method, path, headers=bearer("tl_" + "x" * 40), **kwargs)
        assert bogus.status_code == 401, (where, bogus.text)
        for wrong in _wrong(scope, template, tokens):
            r = client.request(method, path, headers=bearer(wrong), **kwargs)
            assert r.status_code == 403, (where, r.text)
            assert "lacks the scope" in r.json()["detail"]
            seen.append(r)
        right = client.request(method, path, headers=bearer(_right(scope, template, tokens)),
                               **kwargs)
        assert right.status_code == expected, (where, right.status_code, right.text)
        if scope == "read" and "{name}" in template and method == "GET" \
                and not template.endswith("/events"):  # its own campaign, with a lab token
            own = client.request(method, path, headers=bearer(tokens.lab_a), **kwargs)
            assert own.status_code == expected, (where, own.text)
        seen += [none, bogus, right]
    secrets = tokens.all()
    for r in seen:
        text = r.text + " ".join(f"{k}: {v}" for k, v in r.headers.items())
        assert not any(s in text for s in secrets), f"a token in the answer of {r.request.url}"
    assert not any(s in caplog.text for s in secrets), "a token in the logs"
    assert "tl_" + "x" * 40 not in caplog.text


def test_dashboard_routes_without_a_token(server: Live, client: httpx.Client,
                                          tokens: Tokens) -> None:
    """The pages redirect to the login form; the form and static files hold no data;
    ``/v1/whoami`` needs a token (any scope) and answers with its scopes, never the token."""
    for method, path in sorted(DASHBOARD_PAGES):
        r = client.request(method, path.replace("{name}", "pull-a"), follow_redirects=False)
        assert r.status_code in (302, 303, 307) and r.headers["location"].startswith("/login"), \
            (path, r.status_code)
    assert client.get("/login").status_code == 200
    assert client.get("/static/vendor/plotly.min.js").status_code == 200
    assert client.get("/static/../../etc/passwd").status_code == 404
    none = client.get("/v1/whoami")
    assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
    me = client.get("/v1/whoami", headers=bearer(tokens.lab_a))
    assert me.status_code == 200 and "lab:pull-a" in me.text and tokens.lab_a not in me.text
