"""Bearer-token authentication of the service: who may call which route.

Scopes (``storage.tokens``): ``admin`` may do everything, ``read`` may read every campaign,
``lab:<campaign>`` may claim and report work of that one campaign (and read it). A request
without a valid token gets 401 (with ``WWW-Authenticate: Bearer``), a valid token without the
scope a route needs gets 403. Secrets are never logged or echoed.

A browser (the dashboard) presents the same token in a session cookie instead of the header:
``POST /login`` (``optimizer.service.dashboard.routes_dashboard``) checks the token and stores it
in :data:`SESSION_COOKIE` (``HttpOnly``: no script reads it; ``SameSite=Strict``: no other site's
page sends it; ``Secure`` when served over https; ``Path=/``). The header wins when both are
present. A request authenticated by the cookie that changes something (any method but GET /
HEAD / OPTIONS) must also carry the header ``X-Tiltloop-Dashboard: 1``, which another origin's
page cannot add without a CORS preflight this app never grants (defence in depth besides
``SameSite``).

Verifying a secret costs one scrypt (~60 ms, by design), so a verified secret is remembered for
``cache_s`` seconds, keyed by its SHA-256 (the secret itself is not kept): a revoked token stops
working within that time, and ``last_used_at`` is refreshed at most that often.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request, status

from storage import Storage
from storage.tokens import SECRET_PREFIX

#: The dashboard's session cookie: the token itself, HttpOnly, SameSite=Strict.
SESSION_COOKIE = "tiltloop_session"
#: The header a cookie-authenticated request that changes something must carry.
DASHBOARD_HEADER = "x-tiltloop-dashboard"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Seconds a verified secret is trusted without asking the database again.
DEFAULT_CACHE_S = 30.0
_MAX_CACHED = 10_000


@dataclass(frozen=True)
class Principal:
    """The caller of a request: its token's prefix (for logs) and scopes."""

    prefix: str
    scopes: tuple[str, ...]

    def can_admin(self) -> bool:
        return "admin" in self.scopes

    def can_read(self, campaign: str | None = None) -> bool:
        """``read`` or ``admin`` for any campaign; ``lab:<campaign>`` for its own."""
        if self.can_admin() or "read" in self.scopes:
            return True
        return campaign is not None and f"lab:{campaign}" in self.scopes

    def can_lab(self, campaign: str) -> bool:
        return self.can_admin() or f"lab:{campaign}" in self.scopes


class TokenVerifier:
    """Checks bearer secrets against the database, with a short in-memory cache."""

    def __init__(self, storage: Storage, *, cache_s: float = DEFAULT_CACHE_S) -> None:
        self.storage = storage
        self.cache_s = cache_s
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def verify(self, secret: str) -> Principal | None:
        """The principal of ``secret``, or None (unknown, revoked or malformed)."""
        if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
            return None
        digest = hashlib.sha256(secret.encode()).digest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        record = self.storage.verify_token(secret)
        if record is None:
            with self._lock:
                self._cache.pop(digest, None)
            return None
        principal = Principal(prefix=record.prefix, scopes=tuple(record.scopes))
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (now, principal)
        return principal


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail,
                         headers={"WWW-Authenticate": "Bearer"})


def principal_of(request: Request) -> Principal:
    """The request's caller (FastAPI dependency): 401 without a valid bearer token, presented in
    the ``Authorization`` header or (a browser) in the session cookie."""
    header = request.headers.get("authorization")
    if not header:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return _cookie_principal(request, cookie)
        raise _unauthorized("this route needs a bearer token (Authorization: Bearer tl_…); "
                            "create one with `tiltloop token create --scope …`")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise _unauthorized("expected the header `Authorization: Bearer <token>`")
    verifier: TokenVerifier = request.app.state.verifier
    principal = verifier.verify(secret.strip())
    if principal is None:
        raise _unauthorized("the token is unknown or revoked")
    request.state.principal = principal
    return principal


def session_principal(request: Request) -> Principal | None:
    """The caller of a dashboard page by its session cookie, or None (no cookie, or a token that
    is unknown or revoked): the page then redirects to the login page."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    verifier: TokenVerifier = request.app.state.verifier
    return verifier.verify(cookie.strip())


def _cookie_principal(request: Request, secret: str) -> Principal:
    verifier: TokenVerifier = request.app.state.verifier
    principal = verifier.verify(secret.strip())
    if principal is None:
        raise _unauthorized("the session's token is unknown or revoked: log in again at /login")
    if request.method not in _SAFE_METHODS and request.headers.get(DASHBOARD_HEADER) != "1":
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail=f"a request authenticated by the session cookie that changes "
                                   f"something needs the header {DASHBOARD_HEADER}: 1")
    request.state.principal = principal
    return principal


def forbidden(principal: Principal, needs: str) -> HTTPException:
    """403 naming the scope needed (and the token's prefix, never its secret)."""
    return HTTPException(status.HTTP_403_FORBIDDEN,
                         detail=f"token {principal.prefix} lacks the scope this route needs: {needs}")


def require(check: Callable[[Principal, str | None], bool], needs: str
            ) -> Callable[..., Principal]:
    """A dependency that authenticates and then checks a scope (with the path's campaign)."""
    from fastapi import Depends

    def dependency(request: Request, principal: Principal = Depends(principal_of)) -> Principal:
        campaign = request.path_params.get("name")
        if not check(principal, campaign):
            raise forbidden(principal, needs.format(name=campaign))
        return principal

    return dependency


#: Route dependencies by the scope they need.
need_admin = require(lambda p, _c: p.can_admin(), "admin")
need_read = require(lambda p, c: p.can_read(c), "read (or lab:{name} for its own campaign)")
need_lab = require(lambda p, c: c is not None and p.can_lab(c), "lab:{name} (or admin)")
