"""``tiltloop token create | list | revoke``: the secret printed once and alone, listings without
secrets or hashes, revocation by prefix, one-line errors with exit 2."""
from __future__ import annotations

import argparse
import re

import pytest
import sqlalchemy as sa

from storage import Storage
from storage.token_cli import add_token_parser


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tiltloop")
    add_token_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_create_list_revoke(storage_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["token", "create", "--scope", "admin", "--scope", "lab:c1", "--note", "lab A",
                  "--url", storage_url]) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    assert out == secret + "\n" and secret.startswith("tl_")  # the secret alone on stdout
    prefix = secret[:11]
    assert err == (f"tiltloop token: created {prefix} (scopes: admin, lab:c1); the secret above "
                   f"is shown only this once, store it now\n")
    with Storage.open(storage_url) as storage:
        assert storage.verify_token(secret).scopes == ("admin", "lab:c1")  # type: ignore[union-attr]
        with storage.session() as session:
            (stored_hash,) = session.execute(sa.text("SELECT token_hash FROM api_token")).one()

    assert _main(["token", "list", "--url", storage_url]) == 0
    out, err = capsys.readouterr()
    header, row = out.splitlines()
    assert header.split() == ["PREFIX", "SCOPES", "CREATED", "LAST", "USED", "REVOKED", "NOTE"]
    assert row.startswith(f"{prefix}  admin,lab:c1  ") and re.search(r"  -\s+lab A$", row)
    assert secret not in out and stored_hash not in out and err == ""

    assert _main(["token", "revoke", prefix, "--url", storage_url]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith(f"token {prefix} revoked at ") and out.endswith(" UTC\n")
    with Storage.open(storage_url) as storage:
        assert storage.verify_token(secret) is None
    _main(["token", "list", "--url", storage_url])
    (row,) = capsys.readouterr().out.splitlines()[1:]
    assert re.search(r"  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  lab A$", row)  # REVOKED: a date now


def test_errors_are_one_line_exit_2(storage_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["token", "create", "--scope", "root", "--url", storage_url]) == 2
    assert capsys.readouterr().err == (
        "tiltloop token: scope 'root' is invalid: use 'admin', 'read' or 'lab:<campaign-name>' "
        "(a campaign name: 1-128 letters, digits, '.', '_' or '-')\n")
    assert _main(["token", "revoke", "tl_missing", "--url", storage_url]) == 2
    assert capsys.readouterr().err == (
        "tiltloop token: no API token with prefix or id 'tl_missing'; list them with: "
        "tiltloop token list\n")
    with pytest.raises(SystemExit):  # argparse: --scope is required
        _main(["token", "create", "--url", storage_url])
