"""The ``tiltloop`` command line.

Each room contributes its own sub-commands: ``storage.cli`` adds ``db``; the campaign
commands (``demo``, ``run``, ``resume``, ``status``, ``ask``, ``tell``, ``report``) live here.
A command returns an exit code; user errors print one clear message and exit 2.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The full ``tiltloop`` argument parser."""
    parser = argparse.ArgumentParser(prog="tiltloop", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    try:
        from storage.cli import add_db_parser
    except ImportError:  # storage not built yet
        pass
    else:
        add_db_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tiltloop`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
