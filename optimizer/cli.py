"""The ``tiltloop`` command line.

Each room contributes its own sub-commands: ``storage.cli`` adds ``db``; the campaign
commands (``demo``, ``run``, ``resume``, ``status``, ``ask``, ``tell``, ``report``) live here.
A command returns an exit code; user errors print one clear message and exit 2.

    tiltloop demo                       # a complete campaign on this CPU, then its report
    tiltloop run campaign.toml          # start a campaign, or continue it (same config)
    tiltloop resume NAME --budget 256   # continue after a crash or a pause, or extend it
    tiltloop status [NAME] --json
    tiltloop ask NAME / tell NAME results.csv   # manual lab mode
    tiltloop report NAME --out DIR
    tiltloop export NAME --format csv --top 10
    tiltloop campaign pause|resume|cancel|delete|config NAME

Exit codes: 0 done, 2 a user error (one message, nothing written), 3 the campaign is paused by
a budget guard or every query failed (the grouped failure reasons are printed), 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from storage.engine import URL_HELP
from tiltloop.logs import LEVELS, configure_logging

#: exit status when a campaign stopped because its oracle keeps failing
EXIT_FAILING = 3


def _progress(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Progress lines: stdout normally, stderr with --json (stdout is for the JSON answer)."""
    stream = sys.stderr if getattr(args, "json", False) else sys.stdout
    if getattr(args, "quiet", False):
        return lambda _m: None

    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=stream, flush=True)
    return say


def _url(args: argparse.Namespace) -> str:
    from storage.engine import default_url

    return args.url or default_url()


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if args.json else text)


# ---- commands -----------------------------------------------------------------------------------
def _finish(args: argparse.Namespace, status: Any) -> int:
    """Print the final status; a paused campaign or one whose every query failed exits 3 with
    the grouped failure reasons on stderr (a run that spent its budget on failures is no success)."""
    _emit(args, status.to_json(), status.line())
    failed = status.queries.get("failed", 0)
    if status.status == "paused" or (status.status == "completed" and status.results == 0 and failed):
        what = (f"paused: {status.paused_reason}" if status.status == "paused"
                else f"every one of its {failed} queries failed")
        causes = "\n".join(f"  {n}× {cause} (e.g. query {key})" for cause, n, key in status.failures[:5])
        print(f"tiltloop {args.command}: campaign {status.name} {what}\n{causes}\n"
              f"fix the cause, then `tiltloop resume {status.name}`", file=sys.stderr)
        return EXIT_FAILING
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from optimizer.campaign.config_io import load_config
    from optimizer.campaign.service import run_campaign

    config = load_config(args.config)
    args.campaign = config.name
    once = config.oracle.kind in ("manual", "pull")
    status = run_campaign(config, url=args.url, progress=_progress(args), source=str(args.config),
                          timeout_s=args.timeout, once=once)
    if config.oracle.kind == "manual":
        print(f"manual oracle: {status.in_flight} design(s) wait for results; see "
              f"`tiltloop ask {config.name}`", file=sys.stderr)
    elif once:
        print(f"pull oracle: {status.in_flight} design(s) wait for a lab to claim them; "
              f"`tiltloop serve` drives the campaign and serves its labs (or `tiltloop ask "
              f"{config.name}`)", file=sys.stderr)
    return _finish(args, status)


def _cmd_resume(args: argparse.Namespace) -> int:
    from optimizer.campaign.resume import resume_campaign

    status = resume_campaign(args.name, _url(args), budget=args.budget, progress=_progress(args),
                             timeout_s=args.timeout)
    return _finish(args, status)


def _cmd_status(args: argparse.Namespace) -> int:
    from optimizer.campaign.driver import campaign_status
    from optimizer.campaign.service import load_campaign_config, open_storage

    with open_storage(_url(args), create=False) as storage:
        names = [args.name] if args.name else [c.name for c in storage.list_campaigns()]
        statuses = [campaign_status(storage, n, load_campaign_config(storage, n),
                                    with_diagnostics=True) for n in names]
    if args.json:
        print(json.dumps([s.to_json() for s in statuses] if not args.name else statuses[0].to_json(),
                         indent=2, default=str))
    elif not statuses:
        print("no campaigns yet; start one with `tiltloop run CONFIG` or try `tiltloop demo`")
    else:
        for s in statuses:
            print(s.line())
    return 0


def _manual_config(storage: Any, name: str) -> Any:
    from optimizer.campaign.service import load_campaign_config
    from optimizer.errors import CampaignStateError

    config = load_campaign_config(storage, name)
    if config.oracle.kind not in ("manual", "pull"):
        raise CampaignStateError(
            f"campaign {name!r} uses a {config.oracle.kind!r} oracle; ask/tell are for "
            "[oracle] kind = \"manual\" or \"pull\" (use `tiltloop resume` instead)")
    return config


def _cmd_ask(args: argparse.Namespace) -> int:
    from optimizer.campaign.driver import campaign_status
    from optimizer.campaign.oracle import build_oracle
    from optimizer.campaign.service import drive, open_storage

    with open_storage(_url(args), create=False) as storage:
        config = _manual_config(storage, args.name)
        lease = storage.campaign_lease(args.name)
        if config.oracle.kind == "pull" and lease is not None and lease.live:
            status = campaign_status(storage, args.name, config)  # `tiltloop serve` drives it
        else:
            # Ray starts only if a new batch must be generated (not while one awaits results)
            status = drive(config, storage, progress=_progress(args), once=True)
        if config.oracle.kind == "pull":  # claimed like any lab client (same leases, same rules)
            from optimizer.campaign.pull_manual import ask

            path, count = ask(storage, config, Path(args.out or f"{args.name}-pending.csv"))
        else:
            oracle = build_oracle(config)
            try:
                path = oracle.inner.export_pending(args.out)
            finally:
                oracle.close()
            count = status.in_flight
    payload = {**status.to_json(), "pending_file": str(path)}
    _emit(args, payload, f"{status.line()}\n{count} design(s) to measure: {path}\n"
                         f"fill in the objective columns, then: tiltloop tell {args.name} {path}")
    return 0


def _cmd_tell(args: argparse.Namespace) -> int:
    from optimizer.campaign.driver import campaign_status
    from optimizer.campaign.oracle import build_oracle
    from optimizer.campaign.service import open_storage

    with open_storage(_url(args), create=False) as storage:
        config = _manual_config(storage, args.name)
        if config.oracle.kind == "pull":
            return _tell_pull(args, storage, config)
        oracle = build_oracle(config)
        try:
            summary = oracle.inner.import_results(args.file)
            from optimizer.campaign.config_constraints import recorded_outputs
            from optimizer.campaign.dispatch import Dispatcher

            d = Dispatcher(storage, args.name, oracle, objectives=recorded_outputs(config),
                           limit=config.budget.in_flight_limit, on_change=_progress(args))
            d.restore()
            outcome = d.poll()
        finally:
            oracle.close()
        status = campaign_status(storage, args.name, config)
    payload = {**status.to_json(), "imported": {"succeeded": list(summary.succeeded),
                                                "failed": list(summary.failed),
                                                "still_pending": list(summary.still_pending)},
               "stored": outcome.finished}
    _emit(args, payload, f"imported {len(summary.succeeded)} result(s), {len(summary.failed)} "
                         f"failure(s), {len(summary.still_pending)} still pending\n{status.line()}\n"
                         f"next designs: tiltloop ask {args.name}")
    return 0


def _tell_pull(args: argparse.Namespace, storage: Any, config: Any) -> int:
    from optimizer.campaign.driver import campaign_status
    from optimizer.campaign.pull_manual import tell

    out = tell(storage, config, Path(args.file))
    status = campaign_status(storage, args.name, config)
    payload = {**status.to_json(), "imported": {"succeeded": list(out.succeeded),
                                                "failed": list(out.failed),
                                                "still_pending": list(out.still_pending)},
               "refused": [{"key": k, "reason": why} for k, why in out.refused]}
    refused = "".join(f"\n  not stored: {k}: {why}" for k, why in out.refused)
    _emit(args, payload, f"reported {len(out.succeeded)} result(s), {len(out.failed)} "
                         f"failure(s), {len(out.still_pending)} still pending{refused}\n"
                         f"{status.line()}\nnext designs: tiltloop ask {args.name}")
    return EXIT_FAILING if out.refused else 0


def _write_report(storage: Any, name: str, folder: Path) -> Path:
    """``folder/report.html``: the campaign's dashboard views in one self-contained file."""
    from optimizer.service.dashboard.report_html import REPORT_FILE, write_dashboard_report

    return write_dashboard_report(storage, name, Path(folder) / REPORT_FILE)


def _cmd_report(args: argparse.Namespace) -> int:
    from optimizer.campaign.service import open_storage

    out = Path(args.out) if args.out else Path("tiltloop-report") / args.name
    with open_storage(_url(args), create=False) as storage:
        page = _write_report(storage, args.name, out)
    _emit(args, {"html": str(page)},
          f"report written: {page} (the dashboard's views in one self-contained HTML file)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from optimizer.demo import run_demo

    result = run_demo(Path(args.workdir), progress=_progress(args), prior=args.prior, quick=args.quick,
                      report=_write_report)
    _emit(args, result, f"demo finished: best {result['objective']} = {result['best']:.4g} after "
                        f"{result['queries']} queries\nreport: {result['report']}")
    return 0


# ---- parser -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The full ``tiltloop`` argument parser."""
    from tiltloop import __version__

    parser = argparse.ArgumentParser(prog="tiltloop", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tiltloop {__version__}")
    parser.add_argument("--log-level", default="WARNING", choices=LEVELS,
                        help="log records at this level and above go to stderr (default WARNING: "
                             "every retry, give-up and pause)")
    parser.add_argument("--log-json", action="store_true", help="log as JSON lines")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Any, help_: str, *, url: bool = True,
            json_: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        if url:
            p.add_argument("--url", default=None, help=URL_HELP)
        if json_:
            p.add_argument("--json", action="store_true", help="print the answer as JSON")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
        return p

    p = add("demo", _cmd_demo, "run a complete campaign on this CPU (< 5 min) and write its report",
            url=False)
    p.add_argument("--workdir", default="tiltloop-demo", help="where the database and report go")
    p.add_argument("--prior", default="manifold",
                   help="bundled prior to use: manifold, gmm-toy or digits (8x8 images)")
    p.add_argument("--quick", action="store_true", help="a smaller campaign (a smoke test)")
    p = add("run", _cmd_run, "start the campaign described by a TOML config (or continue it: "
                             "same name and config)")
    p.add_argument("config", help="campaign TOML file")
    p.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    p = add("resume", _cmd_resume, "continue a campaign from the database (after a crash, or "
                                   "with --budget to extend it)")
    p.add_argument("name")
    p.add_argument("--budget", type=int, default=None, help="new total oracle budget")
    p.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    p = add("status", _cmd_status, "show campaigns: rounds, queries in flight, best so far")
    p.add_argument("name", nargs="?")
    p = add("ask", _cmd_ask, "manual mode: generate designs and export those awaiting a measurement")
    p.add_argument("name")
    p.add_argument("--out", default=None, help="export file (default: the oracle's pending file)")
    p = add("tell", _cmd_tell, "manual mode: import a results file (validated row by row)")
    p.add_argument("name")
    p.add_argument("file")
    p = add("report", _cmd_report, "write the campaign's dashboard views (plots, the top designs, "
                                   "failures by cause, the config) into one self-contained HTML "
                                   "page that opens offline")
    p.add_argument("name")
    p.add_argument("--out", default=None, help="output folder of report.html (default: "
                                               "tiltloop-report/NAME)")
    from optimizer.campaign.export_cli import add_export_parser
    from optimizer.campaign.ops_cli import add_campaign_parser
    from optimizer.service.cli import add_serve_parser
    from storage.cli import add_db_parser
    from storage.token_cli import add_token_parser

    add_export_parser(sub)
    add_campaign_parser(sub)
    add_db_parser(sub)
    add_token_parser(sub)
    from optimizer.service.dashboard.cli import add_dashboard_parser

    add_dashboard_parser(sub)
    add_serve_parser(sub)
    return parser


def _quiet_numerics() -> None:
    """GPyTorch's jitter notices and BoTorch's input-scaling hints are expected on small data;
    they would drown the progress lines."""
    import warnings

    warnings.filterwarnings("ignore", message=r"A not p\.d\., added jitter")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"botorch\..*")
    try:
        from botorch.exceptions.warnings import InputDataWarning
    except ImportError:  # pragma: no cover
        return
    warnings.filterwarnings("ignore", category=InputDataWarning)


def _quiet_libraries() -> None:
    """Start-up chatter of Ray and diffusers goes to the debug log, not the user's terminal."""
    import logging
    import os

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    for name in ("ray", "diffusers", "transformers", "filelock"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from diffusers.utils import logging as dlog
    except ImportError:  # pragma: no cover
        return
    dlog.set_verbosity_error()
    dlog.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tiltloop`` console script."""
    from tiltloop.errors import TiltloopError

    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, json_lines=args.log_json)
    _quiet_numerics()
    _quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except TiltloopError as exc:
        print(f"tiltloop {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        name = getattr(args, "campaign", None) or getattr(args, "name", None) or "NAME"
        print(f"tiltloop {args.command}: interrupted; campaign {name}'s database is consistent "
              f"and Ray was shut down — `tiltloop resume {name}` continues", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
