"""API tokens: shown once, stored as a salted scrypt hash, verified in constant time; scopes
validated; revoked tokens refused; listings never contain a secret or a hash."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from storage import InvalidScope, InvalidValue, NotFound, Storage, TokenRecord
from storage.tokens import hash_secret, secret_matches


def _stored(storage: Storage) -> list[dict]:
    with storage.session() as session:
        return [dict(r._mapping) for r in session.execute(sa.text("SELECT * FROM api_token"))]


def test_create_stores_only_a_salted_hash(storage: Storage) -> None:
    record, secret = storage.create_token(["admin", "lab:c1", "admin"], note="ci")
    assert re.fullmatch(r"tl_[A-Za-z0-9_-]{43}", secret)
    assert isinstance(record, TokenRecord)
    assert record.prefix == secret[:11] and record.scopes == ("admin", "lab:c1")
    assert (record.note, record.last_used_at, record.revoked_at) == ("ci", None, None)
    (row,) = _stored(storage)
    assert row["token_hash"] != secret and secret not in str(row)
    assert row["token_hash"].startswith("scrypt$16384$8$1$")
    # a second token with the same scopes gets another secret, another salt, another hash
    _, other = storage.create_token(["admin"])
    hashes = [r["token_hash"] for r in _stored(storage)]
    assert other != secret and len(set(hashes)) == 2
    assert hash_secret(secret) != hash_secret(secret)  # per-token salt
    assert secret_matches(secret, row["token_hash"]) and not secret_matches(other, row["token_hash"])


def test_verify_right_wrong_revoked(storage: Storage) -> None:
    record, secret = storage.create_token(["read"])
    verified = storage.verify_token(secret)
    assert verified is not None and verified.id == record.id and verified.scopes == ("read",)
    assert verified.last_used_at is not None and verified.last_used_at >= record.created_at
    again = storage.verify_token(secret)
    assert again is not None and again.last_used_at >= verified.last_used_at  # type: ignore[operator]
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")  # right prefix, wrong secret
    for bad in (wrong, "tl_" + "x" * 43, "", "not-a-token", secret + "x", None):
        assert storage.verify_token(bad) is None  # type: ignore[arg-type]
    revoked = storage.revoke_token(record.prefix)
    assert revoked.revoked and revoked.revoked_at is not None
    assert storage.verify_token(secret) is None
    assert storage.revoke_token(record.id).revoked_at == revoked.revoked_at  # idempotent
    assert storage.list_tokens()[0].last_used_at == again.last_used_at  # type: ignore[union-attr]


def test_revoke_by_prefix_without_tl_or_by_id_and_unknown(storage: Storage) -> None:
    first, _ = storage.create_token(["admin"])
    second, secret = storage.create_token(["read"])
    assert storage.revoke_token(second.prefix[3:]).id == second.id
    assert storage.revoke_token(str(first.id)).id == first.id
    with pytest.raises(NotFound, match=r"no API token with prefix or id 'tl_nothere'; list them "
                                       r"with: tiltloop token list"):
        storage.revoke_token("tl_nothere")
    assert [t.revoked for t in storage.list_tokens()] == [True, True]
    assert storage.verify_token(secret) is None


def test_listing_never_contains_secret_or_hash(storage: Storage) -> None:
    secrets = [storage.create_token(["lab:c1"], note=f"lab {i}")[1] for i in range(3)]
    listed = storage.list_tokens()
    assert [t.note for t in listed] == ["lab 0", "lab 1", "lab 2"]
    hashes = [r["token_hash"] for r in _stored(storage)]
    text = repr(listed)
    assert not any(s in text for s in secrets) and not any(h in text for h in hashes)
    assert "token_hash" not in text


@pytest.mark.parametrize(("scopes", "message"), [
    (["root"], "scope 'root' is invalid: use 'admin', 'read' or 'lab:<campaign-name>'"),
    (["lab:"], "scope 'lab:' is invalid"),
    (["lab:has space"], "scope 'lab:has space' is invalid"),
    (["lab:a:b"], "scope 'lab:a:b' is invalid"),
    ([], "scopes: a token needs at least one scope"),
    ("admin", "scopes: expected a list of scopes, got the string 'admin'; write \\['admin'\\]"),
    ([None], "scope None is invalid"),
])
def test_bad_scopes_refused(storage: Storage, scopes, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidScope, match=message):
        storage.create_token(scopes)
    assert storage.list_tokens() == []


def test_bad_note_refused(storage: Storage) -> None:
    with pytest.raises(InvalidValue, match="note: expected text of at most 500 characters"):
        storage.create_token(["admin"], note="x" * 501)
