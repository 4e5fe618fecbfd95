"""``tiltloop dashboard``: the dashboard as a read-only local view of a database, without the
service (no scheduler, nothing driven), and ``--html NAME``: one campaign's page as a single
self-contained HTML file.

Every route stays authenticated: at start a ``read`` token is created in the database (its
note says so), the login URL carrying it in its fragment (``/login#token=…``: a fragment never
reaches a server or its logs; the login page posts it and removes it from the address bar) is
printed on stderr for the person who started the command, and the token is revoked when the
command exits (Ctrl-C, SIGTERM). A SIGKILL leaves it valid: ``tiltloop token list`` shows it by
its note, ``tiltloop token revoke PREFIX`` ends it. The server binds to 127.0.0.1 only.

Wire it into ``optimizer/cli.py::build_parser`` next to the other ``add_*_parser(sub)`` calls::

    from optimizer.service.dashboard.cli import add_dashboard_parser; add_dashboard_parser(sub)
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from storage.engine import URL_HELP

log = logging.getLogger(__name__)
DEFAULT_PORT = 8765
HOST = "127.0.0.1"
TOKEN_NOTE = "tiltloop dashboard (local, read-only; revoked when it exits)"


def add_dashboard_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``dashboard`` command to the ``tiltloop`` parser; returns its parser."""
    help_ = "a read-only dashboard of a database's campaigns in the browser (127.0.0.1)"
    p = subparsers.add_parser("dashboard", help=help_, description=help_ + (
        ". A read token is created at start and revoked at exit; the login URL is printed."))
    p.set_defaults(func=cmd_dashboard)
    p.add_argument("--url", default=None, help=URL_HELP)
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--html", default=None, metavar="NAME",
                   help="instead of serving: write campaign NAME's page as one self-contained "
                        "HTML file (plots, tables and data inlined) and exit")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="with --html: the file (default: tiltloop-report/NAME/report.html, "
                        "as `tiltloop report NAME` writes it)")
    return p


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Run ``tiltloop dashboard`` for parsed ``args``; returns the exit code."""
    from optimizer.campaign.service import open_storage
    from storage.engine import default_url

    url = args.url or default_url()
    if args.html:
        from optimizer.service.dashboard.report_html import REPORT_FILE, write_dashboard_report

        out = Path(args.out) if args.out else Path("tiltloop-report") / args.html / REPORT_FILE
        with open_storage(url, create=False) as storage:
            path = write_dashboard_report(storage, args.html, out)
        print(f"dashboard page written: {path}", file=sys.stderr)
        return 0
    return serve_dashboard(url, port=args.port,
                           announce=lambda link: print(f"tiltloop dashboard: open {link}",
                                                       file=sys.stderr, flush=True))


def serve_dashboard(url: str, *, port: int = DEFAULT_PORT, announce: Callable[[str], None],
                    on_server: Callable[[object], None] | None = None) -> int:
    """Serve the dashboard of database ``url`` on 127.0.0.1 until interrupted.

    Args:
        announce: called once the server listens, with the login URL (it carries the token in
            its fragment: show it to the user, never log it).
        on_server: called with the ``uvicorn.Server`` before it starts (a caller in another
            thread sets ``should_exit`` on it to stop).
    """
    import uvicorn

    from optimizer.campaign.service import open_storage
    from optimizer.service.app import create_app

    with open_storage(url, create=False) as storage:
        record, secret = storage.create_token(["read"], note=TOKEN_NOTE)
        try:
            app = create_app(storage, replica="dashboard")
            server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning",
                                                   lifespan="off", timeout_graceful_shutdown=2))
            if on_server is not None:
                on_server(server)

            def tell() -> None:
                deadline = time.monotonic() + 30
                while not server.started and time.monotonic() < deadline:
                    if server.should_exit:
                        return
                    time.sleep(0.02)
                if server.started:
                    bound = server.servers[0].sockets[0].getsockname()[1]
                    announce(f"http://{HOST}:{bound}/login#token={secret}")

            threading.Thread(target=tell, name="dashboard-announce", daemon=True).start()
            log.info("dashboard: serving on %s:%s with read token %s", HOST, port, record.prefix)
            server.run()
        finally:
            storage.revoke_token(record.prefix)
            log.info("dashboard: read token %s revoked", record.prefix)
    return 0
