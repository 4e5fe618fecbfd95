"""``tiltloop db upgrade | downgrade REV | current`` — schema migrations from the command line.

Each sub-command takes ``--url`` (default: ``$TILTLOOP_DATABASE_URL``, else
``sqlite:///tiltloop.db``). User errors print one line to stderr and exit 2.

``downgrade`` drops tables and their rows, so it asks first: ``--yes`` skips the question; without
it an interactive terminal must type ``yes`` (anything else: nothing changes, exit 1), and a
non-interactive stdin is refused (exit 2) with a message naming ``--yes``.
"""
from __future__ import annotations

import argparse
import sys

from storage import migrate
from storage.engine import URL_HELP, default_url, redact
from storage.errors import StorageError


def add_db_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``db`` command (with its sub-commands) to the ``tiltloop`` parser."""
    db = subparsers.add_parser("db", help="manage the database schema (migrations)",
                               description=__doc__.splitlines()[0])
    db_sub = db.add_subparsers(dest="db_command", required=True)
    url_help = URL_HELP

    up = db_sub.add_parser("upgrade", help="migrate the schema to the newest revision")
    up.add_argument("--url", default=None, help=url_help)
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    up.set_defaults(func=_upgrade)

    down = db_sub.add_parser("downgrade", help="migrate the schema down to REV ('base' drops all)")
    down.add_argument("revision", metavar="REV")
    down.add_argument("--url", default=None, help=url_help)
    down.add_argument("--yes", action="store_true",
                      help="do not ask for confirmation (required when stdin is not a terminal)")
    down.set_defaults(func=_downgrade)

    cur = db_sub.add_parser("current", help="print the database's schema revision")
    cur.add_argument("--url", default=None, help=url_help)
    cur.set_defaults(func=_current)
    return db


def _guard(action):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        url = args.url or default_url()
        try:
            return action(url, args)
        except StorageError as exc:
            print(f"tiltloop db: {exc}", file=sys.stderr)
            return 2
    return run


@_guard
def _upgrade(url: str, args: argparse.Namespace) -> int:
    before, after = migrate.upgrade(url, args.revision)
    if before == after:
        print(f"database {redact(url)} already at revision {after}")
    else:
        print(f"database {redact(url)} upgraded: {before or 'empty'} -> {after}")
    return 0


def _refuse_unconfirmed(url: str, revision: str) -> int | None:
    """None when the user typed ``yes``; else the exit code (2: cannot ask, 1: declined)."""
    shown = redact(url)
    if not sys.stdin.isatty():
        print(f"tiltloop db: downgrade of database {shown} to revision {revision} drops tables "
              f"and their data, and stdin is not a terminal to confirm it; rerun with --yes to "
              f"proceed", file=sys.stderr)
        return 2
    found = migrate.current(url)
    try:
        answer = input(f"Downgrade database {shown} from revision {found or 'none'} to "
                       f"{revision}? This drops the tables and columns added after {revision}, "
                       f"with their data. Type yes to continue: ")
    except EOFError:
        answer = ""
    if answer.strip() != "yes":
        print("tiltloop db: downgrade not confirmed; nothing changed", file=sys.stderr)
        return 1
    return None


@_guard
def _downgrade(url: str, args: argparse.Namespace) -> int:
    if not args.yes:
        refused = _refuse_unconfirmed(url, args.revision)
        if refused is not None:
            return refused
    before, after = migrate.downgrade(url, args.revision)
    print(f"database {redact(url)} downgraded: {before or 'empty'} -> {after or 'base (empty)'}")
    return 0


@_guard
def _current(url: str, args: argparse.Namespace) -> int:
    found = migrate.current(url)
    head = migrate.head_revision()
    if found == head:
        print(f"{found} (head)")
    elif found is None:
        print(f"none: no tiltloop schema (head is {head}); run: {migrate.upgrade_hint(url)}")
    else:
        print(f"{found} (head is {head}); run: {migrate.upgrade_hint(url)}")
    return 0
