"""``tiltloop export NAME``: a campaign's queries as CSV / JSON on stdout or in a file, or an npy folder.

    tiltloop export demo                          # CSV of every query on stdout
    tiltloop export demo --top 10 --out best.csv  # the 10 best succeeded designs
    tiltloop export demo --status failed --format json
    tiltloop export demo --format npy --out demo-designs/   # designs.npy + rows.json + rows.csv

The command reads the objectives (names and directions) from the config stored with the
campaign. User errors raise :mod:`optimizer.errors` / :mod:`optimizer.errors` errors, so
the ``tiltloop`` main prints one line and exits 2. Wiring, in ``optimizer/cli.py``'s
``build_parser``:

>>> from optimizer.campaign.export_cli import add_export_parser   # doctest: +SKIP
>>> add_export_parser(sub)                                          # doctest: +SKIP
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optimizer.campaign.export import FORMATS
from storage.engine import URL_HELP


def add_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``export`` command to the ``tiltloop`` parser; returns its parser."""
    help_ = "export a campaign's queries (designs, results, surrogate values) as csv, json or npy"
    p = subparsers.add_parser("export", help=help_, description=help_)
    p.set_defaults(func=cmd_export)
    p.add_argument("name", help="campaign name")
    p.add_argument("--url", default=None, help=URL_HELP)
    p.add_argument("--format", choices=FORMATS, default="csv",
                   help="csv / json (a file or stdout) or npy (a folder; default: csv)")
    p.add_argument("--top", type=int, default=None, metavar="K",
                   help="only the K best succeeded queries by the primary objective")
    p.add_argument("--status", action="append", default=None, metavar="STATUS",
                   help="only queries in this status (repeatable), e.g. --status succeeded")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="output file ('-' = stdout, the default for csv / json) or npy folder "
                        "(default for npy: tiltloop-export/NAME)")
    p.add_argument("--with-imported", action="store_true",
                   help="also the results imported by [history] import_from (column `source` "
                        "names the campaign each row came from)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr")
    return p


def cmd_export(args: argparse.Namespace) -> int:
    """Run ``tiltloop export`` for parsed ``args``; returns the exit code (0)."""
    from optimizer.campaign.export import export_campaign, stored_objectives
    from optimizer.campaign.service import open_storage
    from optimizer.errors import CampaignStateError
    from storage.engine import default_url
    from storage.errors import NotFound

    url = args.url or default_url()
    if args.out is not None:
        out: Path | None = Path(args.out)
    elif args.format == "npy":
        out = Path("tiltloop-export") / args.name
    else:
        out = None
    with open_storage(url, create=False) as storage:
        try:
            objectives = stored_objectives(storage, args.name)
        except NotFound as exc:
            raise CampaignStateError(f"cannot export: {exc}; `tiltloop status --url URL` lists "
                                     f"the campaigns of a database") from None
        imported = (storage.load_campaign(args.name).config.get("history", {}).get("import_from", [])
                    if args.with_imported else [])
        result = export_campaign(storage, args.name, out, format=args.format,
                                 objectives=objectives, top=args.top,
                                 statuses=tuple(args.status) if args.status else None,
                                 imported=imported)
    if not args.quiet:
        where = "stdout" if result.path is None else str(result.path)
        print(f"exported {result.rows} quer{'y' if result.rows == 1 else 'ies'} of campaign "
              f"{args.name!r} as {result.format} to {where}", file=sys.stderr)
    return 0
