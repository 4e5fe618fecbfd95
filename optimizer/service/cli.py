"""``tiltloop serve``'s command line (wired into ``optimizer.cli.build_parser``)."""
from __future__ import annotations

import argparse

from storage.engine import URL_HELP


def add_serve_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``tiltloop`` parser."""
    p = subparsers.add_parser(
        "serve", help="run the campaign service: the REST API and a scheduler that drives every "
                      "active campaign in the database",
        description="Run the campaign service: the /v1 REST API, /healthz, /readyz and /metrics, "
                    "and a scheduler driving every active campaign it holds the lease of. Several "
                    "replicas on one database split the campaigns and take over a dead one's. "
                    "Joins the Ray cluster at $RAY_ADDRESS, else starts a local one. SIGTERM "
                    "stops it cleanly (exit 0).")
    p.set_defaults(func=_cmd_serve)
    p.add_argument("--url", default=None, help=URL_HELP)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8080, help="port (default 8080; 0: a free one, "
                                                            "printed on start)")
    p.add_argument("--lease-ttl", type=_positive, default=30.0, metavar="SECONDS",
                   help="campaign lease time-out: a dead replica's campaigns are taken over "
                        "after it (default 30)")
    p.add_argument("--max-campaigns", type=_count, default=50, metavar="N",
                   help="campaigns this replica drives at once (1-1000, default 50)")
    p.add_argument("--tick", type=_positive, default=1.0, metavar="SECONDS",
                   help="seconds between two looks for campaigns to drive (default 1)")
    return p


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected 1 to 1000 campaigns, got {value}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"expected seconds > 0 and <= 86400, got {text}")
    return value


def _cmd_serve(args: argparse.Namespace) -> int:
    from optimizer.service.serve import ServeOptions, serve
    from storage.engine import default_url

    return serve(ServeOptions(url=args.url or default_url(), host=args.host, port=args.port,
                              lease_ttl_s=args.lease_ttl, max_campaigns=args.max_campaigns,
                              tick_s=args.tick))
