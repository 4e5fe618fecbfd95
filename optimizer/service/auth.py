"""Bearer-token authentication of the service: who may call which route.

Scopes (``storage.tokens``): ``admin`` may do everything, ``read`` may read every campaign,
``lab:<campaign>`` may claim and report work of that one campaign (and read it). A request
without a valid token gets 401 (with ``WWW-Authenticate: Bearer``), a valid token without the
scope a route needs gets 403. Secrets are never logged or echoed.

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
    """The request's caller (FastAPI dependency): 401 without a valid bearer token."""
    header = request.headers.get("authorization")
    if not header:
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
