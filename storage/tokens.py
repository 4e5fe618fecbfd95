"""API tokens of the service: created with a random secret shown once, stored only as a hash.

The secret is ``tl_`` + ``secrets.token_urlsafe(32)`` (256 random bits). The database keeps
``prefix`` (``tl_`` and the next 8 characters: unique, shown in listings, used to find the row
and to revoke) and ``token_hash``, ``scrypt$N$r$p$<salt>$<digest>`` (hashlib.scrypt with a
per-token random salt). :meth:`verify_token` finds the row by prefix and compares digests in
constant time (:func:`hmac.compare_digest`); an unknown prefix still costs one scrypt, so the
answer time does not tell whether a prefix exists.

Scopes: ``"admin"`` (everything), ``"read"`` (read-only API), ``"lab:<campaign>"`` (the pull
API of one campaign; the campaign need not exist yet, so a lab can be set up first).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.clock import db_now
from storage.errors import IntegrityViolation, InvalidScope, InvalidValue, NotFound
from storage.models import ApiToken
from storage.records import TokenRecord
from storage.session import NAME_PATTERN, StorageBase

#: Every secret starts with this, so a leaked one is recognisable (secret scanners, logs).
SECRET_PREFIX = "tl_"
#: Characters of a secret stored and shown as its prefix: ``tl_`` and 8 random characters.
PREFIX_LENGTH = len(SECRET_PREFIX) + 8
#: scrypt cost: N=2**14, r=8, p=1 (16 MiB, tens of ms); stored in each hash, so it can change.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_SALT_BYTES = 16
_NOTE_MAX = 500


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Scopes validated and de-duplicated (order kept); else :class:`InvalidScope`."""
    if isinstance(scopes, str):
        raise InvalidScope(f"scopes: expected a list of scopes, got the string {scopes!r}; "
                           f"write [{scopes!r}]")
    out: list[str] = []
    for scope in scopes:
        ok = isinstance(scope, str) and (
            scope in ("admin", "read")
            or (scope.startswith("lab:") and NAME_PATTERN.match(scope[4:]) is not None)
        )
        if not ok:
            raise InvalidScope(
                f"scope {scope!r} is invalid: use 'admin', 'read' or 'lab:<campaign-name>' "
                f"(a campaign name: 1-128 letters, digits, '.', '_' or '-')"
            )
        if scope not in out:
            out.append(scope)
    if not out:
        raise InvalidScope("scopes: a token needs at least one scope ('admin', 'read' or "
                           "'lab:<campaign-name>')")
    return tuple(out)


def hash_secret(secret: str, *, salt: bytes | None = None, n: int = SCRYPT_N, r: int = SCRYPT_R,
                p: int = SCRYPT_P) -> str:
    """``scrypt$N$r$p$<salt>$<digest>`` (base64url) of ``secret`` with a random salt."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def secret_matches(secret: str, stored: str) -> bool:
    """Whether ``secret`` hashes to ``stored`` (constant-time comparison of the digests)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        salt_bytes = base64.urlsafe_b64decode(salt)
        expected = base64.urlsafe_b64decode(digest)
        got = hashlib.scrypt(secret.encode(), salt=salt_bytes, n=int(n), r=int(r), p=int(p),
                             dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY_HASH = hash_secret("tl_not-a-token")


def _record(row: ApiToken) -> TokenRecord:
    return TokenRecord(id=row.id, prefix=row.prefix, scopes=tuple(row.scopes), note=row.note,
                       created_at=row.created_at, last_used_at=row.last_used_at,
                       revoked_at=row.revoked_at)


class TokensMixin(StorageBase):
    """API tokens (hashed) for the service."""

    def create_token(self, scopes: Iterable[str], note: str | None = None
                     ) -> tuple[TokenRecord, str]:
        """A new token with ``scopes``; returns its record and its secret.

        The secret is returned once, here: only its scrypt hash is stored, so it cannot be
        shown again (revoke and create another if it is lost).

        Raises:
            InvalidScope: a scope that is not 'admin', 'read' or 'lab:<campaign-name>'.
            InvalidValue: a note longer than 500 characters.
        """
        checked = list(check_scopes(scopes))
        if note is not None and (not isinstance(note, str) or len(note) > _NOTE_MAX):
            raise InvalidValue(f"note: expected text of at most {_NOTE_MAX} characters, "
                               f"got {note!r:.80}")
        for _ in range(3):  # a prefix collision (48 random bits) is retried with a new secret
            secret = SECRET_PREFIX + secrets.token_urlsafe(32)
            try:
                with self.session() as session:
                    row = ApiToken(token_hash=hash_secret(secret), prefix=secret[:PREFIX_LENGTH],
                                   scopes=checked, note=note, created_at=db_now())
                    session.add(row)
                    session.flush()
                    session.refresh(row)
                    return _record(row), secret
            except IntegrityViolation:
                continue
        raise IntegrityViolation("could not create a token with a unique prefix in 3 tries")

    def verify_token(self, secret: str) -> TokenRecord | None:
        """The token whose secret is ``secret``, with ``last_used_at`` set to database now.

        Returns:
            None for a wrong, malformed or revoked secret (the same answer for each).
        """
        if (not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX)
                or len(secret) < PREFIX_LENGTH or len(secret) > 200):
            return None
        with self.session() as session:
            row = session.scalar(sa.select(ApiToken)
                                 .where(ApiToken.prefix == secret[:PREFIX_LENGTH]))
            if row is None:
                secret_matches(secret, _DUMMY_HASH)  # same cost as a wrong secret
                return None
            if not secret_matches(secret, row.token_hash) or row.revoked_at is not None:
                return None
            session.execute(sa.update(ApiToken).where(ApiToken.id == row.id,
                                                      ApiToken.revoked_at.is_(None))
                            .values(last_used_at=db_now()))
            session.refresh(row)
            return _record(row)

    def list_tokens(self) -> list[TokenRecord]:
        """Every token, oldest first, revoked ones included (no secrets, no hashes)."""
        with self.session() as session:
            return [_record(r) for r in session.scalars(sa.select(ApiToken).order_by(ApiToken.id))]

    def revoke_token(self, prefix_or_id: str | int) -> TokenRecord:
        """Revoke a token by its prefix (``tl_XXXXXXXX``; the ``tl_`` may be left out) or id.

        Idempotent: revoking a revoked token keeps its first ``revoked_at``.

        Raises:
            NotFound: no token has this prefix or id.
        """
        with self.session() as session:
            row = self._token_row(session, prefix_or_id)
            session.execute(sa.update(ApiToken).where(ApiToken.id == row.id,
                                                      ApiToken.revoked_at.is_(None))
                            .values(revoked_at=db_now()))
            session.refresh(row)
            return _record(row)

    def _token_row(self, session: Session, prefix_or_id: str | int) -> ApiToken:
        row = None
        if isinstance(prefix_or_id, int) and not isinstance(prefix_or_id, bool):
            row = session.get(ApiToken, prefix_or_id)
        elif isinstance(prefix_or_id, str) and prefix_or_id.strip():
            text = prefix_or_id.strip()
            prefix = text if text.startswith(SECRET_PREFIX) else SECRET_PREFIX + text
            row = session.scalar(sa.select(ApiToken).where(ApiToken.prefix == prefix[:PREFIX_LENGTH]))
            if row is None and text.isdigit():
                row = session.get(ApiToken, int(text))
        if row is None:
            raise NotFound(f"no API token with prefix or id {prefix_or_id!r}; "
                           f"list them with: tiltloop token list")
        return row
