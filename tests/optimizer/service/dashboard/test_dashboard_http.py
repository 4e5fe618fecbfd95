"""The dashboard's routes over real HTTP (no browser): the session cookie's attributes, login /
logout, pages behind the session, static assets, ``/v1/whoami`` and the bundle route; and the
pure helpers (redaction, the over-optimization warning, Pareto front and hypervolume)."""
from __future__ import annotations

import httpx
import numpy as np
import pytest

from optimizer.service.auth import SESSION_COOKIE
from optimizer.service.dashboard.data import gap_warning, hypervolume, pareto_mask, redact_config
from service_helpers import Live, Tokens, bearer
from dashboard_helpers import SECRET_TOKEN_FIELD
from storage import Storage


def _login(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/login", data={"token": token, "next": "/campaigns/vec"})


def test_login_sets_a_strict_httponly_cookie_and_never_echoes_the_token(
        client: httpx.Client, tokens: Tokens) -> None:
    r = _login(client, tokens.read)
    assert r.status_code == 303 and r.headers["location"] == "/campaigns/vec"
    cookie = r.headers["set-cookie"]
    parts = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
    assert {"httponly", "path", "samesite"} <= parts
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in parts  # plain http on loopback; https gets Secure
    assert tokens.read not in r.text
    # the cookie authenticates the API and the pages
    assert client.get("/v1/whoami").json() == {"scopes": ["read"], "admin": False, "read": True}
    assert client.get("/").status_code == 200
    # logout clears it: the pages go back to the login form
    out = client.post("/logout")
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/").headers["location"] == "/login"


def test_a_wrong_token_gets_the_form_again_and_no_cookie(client: httpx.Client) -> None:
    r = _login(client, "tl_notatoken_at_all")
    assert r.status_code == 401 and "set-cookie" not in r.headers
    assert "unknown, revoked or malformed" in r.text and "tl_notatoken" not in r.text
    assert client.get("/campaigns/vec").status_code == 303
    assert client.get("/v1/whoami").status_code == 401


def test_open_redirects_are_refused(client: httpx.Client, tokens: Tokens) -> None:
    for target in ("//evil.example/", "https://evil.example/", "\\\\evil"):
        r = client.post("/login", data={"token": tokens.read, "next": target})
        assert r.headers["location"] == "/"


def test_a_cookie_post_needs_the_dashboard_header(client: httpx.Client, tokens: Tokens,
                                                  campaigns: dict[str, list[str]]) -> None:
    _login(client, tokens.admin)
    bare = client.post("/v1/campaigns/vec/pause", json={})
    assert bare.status_code == 403 and "x-tiltloop-dashboard" in bare.json()["detail"]
    ok = client.post("/v1/campaigns/vec/pause", json={}, headers={"X-Tiltloop-Dashboard": "1"})
    assert ok.status_code == 200 and ok.json()["status"] == "paused"


def test_the_header_path_is_unchanged(client: httpx.Client, tokens: Tokens,
                                      campaigns: dict[str, list[str]]) -> None:
    assert client.get("/v1/campaigns", headers=bearer(tokens.read)).status_code == 200
    # a bearer header is not a cookie: no dashboard header needed, and it wins over a cookie
    r = client.post("/v1/campaigns/vec/pause", json={}, headers=bearer(tokens.admin))
    assert r.status_code == 200
    _login(client, tokens.admin)
    assert client.post("/v1/campaigns/vec/resume", headers={
        **bearer(tokens.read), "X-Tiltloop-Dashboard": "1"}).status_code == 403


def test_static_assets_and_plotly_from_the_package(client: httpx.Client) -> None:
    js = client.get("/static/js/page_campaign.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    plotly = client.get("/static/vendor/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    for bad in ("/static/../routes_dashboard.py", "/static/%2e%2e/data.py", "/static/js/nope.js",
                "/static/../../auth.py"):
        assert client.get(bad).status_code == 404, bad


def test_bundle_route_needs_read_and_redacts(client: httpx.Client, tokens: Tokens,
                                             campaigns: dict[str, list[str]]) -> None:
    assert client.get("/v1/campaigns/vec/dashboard").status_code == 401
    assert client.get("/v1/campaigns/vec/dashboard",
                      headers=bearer(tokens.lab_a)).status_code == 403
    assert client.get("/v1/campaigns/ghost/dashboard",
                      headers=bearer(tokens.read)).status_code == 404
    r = client.get("/v1/campaigns/vec/dashboard", headers=bearer(tokens.read))
    assert r.headers["content-encoding"] == "gzip"  # httpx accepts it, and decodes it
    plain = client.get("/v1/campaigns/vec/dashboard",
                       headers={**bearer(tokens.read), "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.json()["points"] == r.json()["points"]
    b = r.json()
    assert b["primary"] == "y" and len(b["points"]["key"]) == 16
    assert b["points"]["status"].count("succeeded") == 11
    assert [r["index"] for r in b["rounds"]] == [0, 1, 2, 3]
    assert b["rounds"][0]["ess"][0] == pytest.approx(1.0) and b["rounds"][0]["lambdas"][-1] == 1.0
    assert b["failures"][0]["count"] == 1 and "offline" in b["failures"][0]["cause"]
    assert b["config"]["current"]["oracle"]["token_env"] == "***"
    assert SECRET_TOKEN_FIELD not in str(b) and "hunter2" not in str(b)
    assert "config" not in b["campaign"]
    assert len(b["top"]) == 11 and b["top"][0]["value"] == max(
        v for v in b["points"]["values"]["y"] if v is not None)
    # a live reader's cursor: nothing changed since, so no point and no round comes
    d = client.get(f"/v1/campaigns/vec/dashboard?after={b['cursor']}", headers=bearer(tokens.read))
    assert d.json()["delta"] is True and d.json()["points"]["key"] == [] and d.json()["rounds"] == []
    bad = client.get("/v1/campaigns/vec/dashboard?after=-1", headers=bearer(tokens.read))
    assert bad.status_code == 422 and "after" in bad.text


def test_redact_config() -> None:
    raw = {"a": {"api_key": "k", "Password": "p", "x": 1, "token_file": None},
           "urls": ["postgresql://u:pw@h/db", "http://h/x"], "headers": {"Authorization": "B x"}}
    assert redact_config(raw) == {"a": {"api_key": "***", "Password": "***", "x": 1,
                                        "token_file": None},
                                  "urls": ["postgresql://u:***@h/db", "http://h/x"],
                                  "headers": {"Authorization": "***"}}


def test_gap_warning() -> None:
    assert gap_warning([None, 0.1, 0.2]) is None  # two rounds with results
    assert gap_warning([0.1, 0.2, 0.4]) is not None  # rising three rounds
    assert gap_warning([0.3, 0.2, 0.25]) is None
    assert gap_warning([0.1, 0.1, 0.12, 0.1, 0.5]) is not None  # a jump
    assert gap_warning([-0.3, -0.2, -0.1]) is None  # under-estimates: no over-optimization


def test_pareto_and_hypervolume() -> None:
    y = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.4, 0.4]])
    assert pareto_mask(y).tolist() == [True, True, True, False]
    assert hypervolume(y, np.array([-1.0, -1.0])) == pytest.approx(2 * 1 + 1.5 * 0.5 + 1 * 0.5)


def test_hypervolume_of_three_objectives_in_closed_form() -> None:
    ref = np.zeros(3)
    assert hypervolume(np.array([[2.0, 3.0, 4.0]]), ref) == pytest.approx(24.0)  # one box
    # three boxes of volume 2 pairwise overlapping in the unit cube, all three in it too:
    # inclusion-exclusion 3 * 2 - 3 * 1 + 1 = 4; a dominated point and one below ref add nothing
    y = np.array([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 2.0], [0.5, 0.5, 0.5],
                  [5.0, 5.0, -1.0]])
    assert hypervolume(y, ref) == pytest.approx(4.0)
    assert hypervolume(y[:2], ref) == pytest.approx(3.0)
    assert hypervolume(np.empty((0, 3)), ref) == 0.0


def test_multi_objective_bundle(storage: Storage, server: Live, tokens: Tokens, make_config) -> None:
    from dashboard_helpers import create_campaign

    create_campaign(storage, "mo", make_config("mo", objectives=[
        {"name": "y", "direction": "maximize"}, {"name": "cost", "direction": "minimize"}]))
    from optimizer.service.dashboard.data import campaign_bundle
    from storage import NewCandidate
    rec = storage.record_round("mo", 0, alpha=0.5, selected=[0, 1, 2], oracle_name="pull",
                               candidates=[NewCandidate(design=np.zeros(2, np.float32) + i)
                                           for i in range(3)])
    for key, (y, cost) in zip(rec.query_keys, [(1.0, 1.0), (2.0, 3.0), (0.5, 2.0)]):
        storage.transition_query(key, expected="pending", new="dispatched")
        storage.transition_query(key, expected="dispatched", new="succeeded",
                                 values={"y": y, "cost": cost})
    b = campaign_bundle(storage, "mo")
    assert b["pareto"]["front"] == list(rec.query_keys[:2])
    assert b["pareto"]["hypervolume"]["value"][-1] > 0
