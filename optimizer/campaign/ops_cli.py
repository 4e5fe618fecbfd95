"""``tiltloop campaign pause|resume|cancel|delete|config NAME`` — campaign operations.

    tiltloop campaign pause hartmann-01 --reason "lab maintenance"
    tiltloop campaign resume hartmann-01          # paused -> active (then `tiltloop resume` drives it)
    tiltloop campaign cancel hartmann-01          # for good: queued queries never reach the lab
    tiltloop campaign delete hartmann-01 --yes    # refuses while queries are in flight (--force)
    tiltloop campaign config hartmann-01 --set sampler.alpha=0.05 --set budget.total=512
    tiltloop campaign config hartmann-01 new.toml # a whole new config (same name)
    tiltloop campaign config hartmann-01 --history

User errors raise the project's errors (the main CLI prints one line and exits 2).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from optimizer.errors import CampaignStateError
from storage.engine import URL_HELP


def _confirm(question: str, *, yes: bool, flag: str = "--yes") -> None:
    """Ask on a terminal; without one (a script, CI) refuse unless ``yes``."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CampaignStateError(f"{question} — refusing without confirmation: pass {flag}")
    answer = input(f"{question} Type 'yes' to confirm: ").strip().lower()
    if answer != "yes":
        raise CampaignStateError("not confirmed; nothing was changed")


def _open(args: argparse.Namespace) -> Any:
    from optimizer.campaign.service import open_storage
    from storage.engine import default_url

    return open_storage(args.url or default_url(), create=False)


def _cmd_pause(args: argparse.Namespace) -> int:
    from optimizer.campaign.operations import pause

    with _open(args) as storage:
        was = pause(storage, args.name, reason=args.reason)
    print(f"campaign {args.name}: {'already paused' if was == 'paused' else 'paused'}")
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from optimizer.campaign.operations import unpause

    with _open(args) as storage:
        was = unpause(storage, args.name)
    print(f"campaign {args.name}: {'already active' if was == 'active' else 'active again'}; "
          f"`tiltloop resume {args.name}` drives it in this shell")
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    from optimizer.campaign.operations import cancel
    from optimizer.campaign.service import load_campaign_config

    _confirm(f"cancel campaign {args.name!r} for good?", yes=args.yes)
    with _open(args) as storage:
        out = cancel(storage, args.name, load_campaign_config(storage, args.name))
    print(f"campaign {args.name}: cancelled; {len(out.never_sent)} queued quer"
          f"{'y' if len(out.never_sent) == 1 else 'ies'} never sent, {len(out.at_oracle)} "
          "cancelled at the oracle")
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    from optimizer.campaign.operations import delete

    with _open(args) as storage:
        storage.load_campaign(args.name)  # a missing name fails before the question
        _confirm(f"delete campaign {args.name!r} and all its rounds, queries and results?",
                 yes=args.yes)
        counts = delete(storage, args.name, force=args.force)
    print(f"campaign {args.name} deleted: " + ", ".join(f"{n} {t}" for t, n in counts.items() if n))
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from optimizer.campaign.config_io import apply_overrides, load_config
    from optimizer.campaign.operations import new_config_version
    from optimizer.campaign.service import (
        check_imports,
        load_campaign_config,
        preflight,
    )

    with _open(args) as storage:
        if args.history:
            rows = storage.config_versions(args.name)
            if args.json:
                print(json.dumps([{"version": r.version, "note": r.note, "created_at": r.created_at,
                                   "config": r.config} for r in rows], indent=2, default=str))
            for r in rows if not args.json else ():
                print(f"version {r.version}  {r.created_at:%Y-%m-%d %H:%M:%S}  {r.note or ''}")
            return 0
        if args.file is None and not args.set:
            raise CampaignStateError("give a new config file or --set KEY=VALUE (or --history)")
        if args.file is not None:
            config = load_config(args.file)
            source = str(args.file)
        else:
            config = load_campaign_config(storage, args.name)
            source = "--set"
        if args.set:
            config = apply_overrides(config, args.set, source=source)
        preflight(config, source=source)  # the new config must run before it is stored
        check_imports(config, storage, source=source)
        version, changed = new_config_version(storage, args.name, config, note=args.note)
    print(f"campaign {args.name}: config version {version} stored ({', '.join(changed)} changed); "
          "rounds generated from now on use it")
    return 0


def add_campaign_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``tiltloop campaign ...`` to the main parser."""
    top = sub.add_parser("campaign", help="pause, resume, cancel, delete a campaign or change its config",
                         description=__doc__.splitlines()[0])
    ops = top.add_subparsers(dest="campaign_command", required=True)

    def add(name: str, func: Any, help_: str) -> argparse.ArgumentParser:
        p = ops.add_parser(name, help=help_, description=help_)
        p.add_argument("name")
        p.add_argument("--url", default=None, help=URL_HELP)
        p.set_defaults(func=func)
        return p

    p = add("pause", _cmd_pause, "stop generating and dispatching (in-flight queries stay recorded)")
    p.add_argument("--reason", default="paused by an operator", help="shown by status and the report")
    add("resume", _cmd_resume, "mark a paused campaign active again")
    p = add("cancel", _cmd_cancel, "end a campaign for good (queued queries are never sent)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p = add("delete", _cmd_delete, "delete a campaign and everything stored for it")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--force", action="store_true", help="delete even with queries in flight")
    p = add("config", _cmd_config, "store a new config version (a file, or --set KEY=VALUE)")
    p.add_argument("file", nargs="?", default=None, help="a whole new config TOML (same name)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change one setting, e.g. --set sampler.alpha=0.05 (TOML values)")
    p.add_argument("--note", default=None, help="why (kept with the version)")
    p.add_argument("--history", action="store_true", help="list the stored versions")
    p.add_argument("--json", action="store_true", help="with --history: print JSON")
    return top
