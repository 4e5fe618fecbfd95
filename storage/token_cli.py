"""``tiltloop token create | list | revoke`` — API tokens of ``tiltloop serve``.

Each sub-command takes ``--url`` (default: ``$TILTLOOP_DATABASE_URL``, else
``sqlite:///tiltloop.db``). ``create`` prints the new secret alone on stdout, once: only its hash
is stored, so nothing can show it again. ``list`` never shows secrets or hashes. User errors
print one line to stderr and exit 2.

>>> tiltloop token create --scope lab:c1 --note "lab A"      # stdout: tl_...
>>> tiltloop token revoke tl_AbCdEfGh
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime

from storage.engine import URL_HELP, default_url
from storage.errors import StorageError
from storage.records import TokenRecord
from storage.store import Storage


def add_token_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``token`` command (with its sub-commands) to the ``tiltloop`` parser."""
    token = subparsers.add_parser("token", help="manage API tokens of tiltloop serve",
                                  description=__doc__.splitlines()[0])
    sub = token.add_subparsers(dest="token_command", required=True)

    create = sub.add_parser("create", help="create a token and print its secret (once)")
    create.add_argument("--scope", action="append", required=True, metavar="SCOPE",
                        help="'admin', 'read' or 'lab:CAMPAIGN' (repeat for several)")
    create.add_argument("--note", default=None, help="what the token is for (shown in listings)")
    create.add_argument("--url", default=None, help=URL_HELP)
    create.set_defaults(func=_create)

    lst = sub.add_parser("list", help="list tokens (prefix, scopes, dates; never secrets)")
    lst.add_argument("--url", default=None, help=URL_HELP)
    lst.set_defaults(func=_list)

    revoke = sub.add_parser("revoke", help="revoke a token by its prefix (or id)")
    revoke.add_argument("prefix", metavar="PREFIX", help="the token's prefix, e.g. tl_AbCdEfGh")
    revoke.add_argument("--url", default=None, help=URL_HELP)
    revoke.set_defaults(func=_revoke)
    return token


def _guard(action):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        try:
            with Storage.open(args.url or default_url(), actor="tiltloop token") as storage:
                return action(storage, args)
        except StorageError as exc:
            print(f"tiltloop token: {exc}", file=sys.stderr)
            return 2
    return run


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


@_guard
def _create(storage: Storage, args: argparse.Namespace) -> int:
    record, secret = storage.create_token(args.scope, note=args.note)
    print(secret)
    print(f"tiltloop token: created {record.prefix} (scopes: {', '.join(record.scopes)}); the "
          f"secret above is shown only this once, store it now", file=sys.stderr)
    return 0


def _row(t: TokenRecord) -> list[str]:
    return [t.prefix, ",".join(t.scopes), _when(t.created_at), _when(t.last_used_at),
            _when(t.revoked_at), t.note or ""]


@_guard
def _list(storage: Storage, args: argparse.Namespace) -> int:
    rows = [["PREFIX", "SCOPES", "CREATED", "LAST USED", "REVOKED", "NOTE"]]
    rows += [_row(t) for t in storage.list_tokens()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print(("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]).rstrip())
    return 0


@_guard
def _revoke(storage: Storage, args: argparse.Namespace) -> int:
    record = storage.revoke_token(args.prefix)
    print(f"token {record.prefix} revoked at {_when(record.revoked_at)} UTC")
    return 0
