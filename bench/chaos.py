"""A short chaos run: the fault-injection scenarios of ``tests/faults/`` in one table.

    PYTHONPATH=$PWD .venv/bin/python bench/chaos.py [--kills 10] [--repeat 1] [--sqlite]

Scenarios (each a function returning one row; a new scenario is one more entry in ``SCENARIOS``):

* ``sigkill+proxy``: one campaign, ``--kills`` SIGKILLs of its driver at seeded random moments,
  ``tiltloop resume`` after each, the lab simulator behind the fault-injecting proxy (503s,
  connections dropped after the lab accepted, delays);
* ``bad-lab``: every bad-reply mode of the fake lab (NaN, inf, strings, missing fields, wrong key,
  2xx without id, 429, hangs, 10 MB bodies, HTML, invalid JSON), persistent and then recovering,
  through the real dispatcher and HTTP oracle;
* ``two-drivers``: two ``tiltloop run`` processes started together on one campaign;
* ``db-outage``: Postgres cut and refused for 2 s mid-campaign, behind
  ``tests/faults/pg_forwarder.py`` (one run of ``bench/db_outage.py``'s case; Postgres only).

Columns: kills, outages, injected faults (by kind), lost (a lab result not stored, or a query
stuck in flight), paid twice (a key or design the lab evaluated twice; for two-drivers also any
extra POST), tracebacks (in the drivers' output and the log records), wall and CPU seconds (this
process and its children), and the 1-minute load average when the row finished. With
``--repeat N`` the scenarios run N times, interleaved. Storage: a fresh schema on the test
Postgres (``TILTLOOP_TEST_DATABASE_URL``), or SQLite files with ``--sqlite``.
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the fault-injection tools live with the tests

from faults.bad_lab import MODES, BadLab  # noqa: E402
from faults.bad_lab_drive import dispatcher, drive, reply_storage  # noqa: E402
from faults.kill_campaign import run_kill_campaign  # noqa: E402
from faults.two_drivers import run_two_drivers  # noqa: E402

TRANSIENT = ("no-id", "429", "hang", "endless", "html", "invalid-json")
COLUMNS = ("scenario", "kills", "outages", "faults", "lost", "paid twice", "tracebacks",
           "wall s", "cpu s", "load")


@dataclass
class Context:
    """What every scenario needs: a scratch folder, a database per name, Ray, a tiny prior."""

    workdir: Path
    db_url: Callable[[str], str]
    ray_address: str
    prior: str
    kills: int
    seed: int
    sqlite: bool = False


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _row(name: str, start: tuple[float, float], **cells: Any) -> dict[str, Any]:
    wall0, cpu0 = start
    return {"scenario": name, "kills": 0, "outages": 0, **cells,
            "wall s": time.perf_counter() - wall0, "cpu s": _cpu() - cpu0,
            "load": os.getloadavg()[0]}


def scenario_kills(ctx: Context) -> dict[str, Any]:
    """SIGKILLs across one campaign, proxy faults on."""
    start = (time.perf_counter(), _cpu())
    name = f"kills-{uuid.uuid4().hex[:6]}"
    report = run_kill_campaign(ctx.workdir / name, ctx.db_url(name), ctx.prior, ctx.ray_address,
                               kills=ctx.kills, seed=ctx.seed, name="chaos-kills")
    faults = dict(report.injected)
    return _row("sigkill+proxy", start, kills=report.kills, faults=faults, lost=report.lost,
                **{"paid twice": report.paid_twice, "tracebacks": report.tracebacks},
                note=f"{report.status}, {report.counts.get('succeeded', 0)}/{report.total} results, "
                     f"unkilled exits {report.exits}")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def scenario_bad_lab(ctx: Context) -> dict[str, Any]:
    """Each bad-reply mode, persistent and (where a lab can recover) recovering."""
    start = (time.perf_counter(), _cpu())
    handler = _Records()
    logging.getLogger().addHandler(handler)
    faults: Counter[str] = Counter()
    lost = failed = recovered = 0
    try:
        cases = [(m, None) for m in sorted(MODES)] + [(m, 2) for m in TRANSIENT]
        for i, (mode, ok_after) in enumerate(cases):
            name = f"bad-{i}"
            st = reply_storage(ctx.db_url(name))
            try:
                with BadLab(mode, ok_after=ok_after, retry_after="3600") as lab:
                    d = dispatcher(st, lab.url)
                    try:
                        drive(d, st)
                    except AssertionError:
                        pass  # counted as lost below
                    finally:
                        d.close()
                faults[mode] += lab.spoiled
                for q in st.list_queries("chaos-replies"):
                    if q.status == "succeeded" and q.values == {"y": 1.5}:
                        recovered += 1
                    elif q.status == "failed" and q.error:
                        failed += 1
                    else:
                        lost += 1
            finally:
                st.close()
    finally:
        logging.getLogger().removeHandler(handler)
    tracebacks = sum(r.exc_info is not None for r in handler.records)
    return _row("bad-lab", start, faults=dict(faults), lost=lost,
                **{"paid twice": "-", "tracebacks": tracebacks},
                note=f"{failed} failed with a reason, {recovered} succeeded after retry")


def scenario_two_drivers(ctx: Context) -> dict[str, Any]:
    """Two drivers started together on one campaign."""
    start = (time.perf_counter(), _cpu())
    name = f"twins-{uuid.uuid4().hex[:6]}"
    out = run_two_drivers(ctx.workdir / name, ctx.db_url(name), ctx.prior, ctx.ray_address)
    lost = 12 - out.counts.get("succeeded", 0)
    return _row("two-drivers", start, faults={"second driver": 1}, lost=lost,
                **{"paid twice": out.paid_twice + out.extra_posts,
                   "tracebacks": sum(log.count("Traceback") for log in out.logs)},
                note=f"exit codes {sorted(out.codes)}")


def scenario_db_outage(ctx: Context) -> dict[str, Any]:
    """A 2 s database outage mid-campaign (the driver rides it out, no resume)."""
    import importlib.util

    import sqlalchemy as sa
    from faults.pg_forwarder import PgForwarder
    from pg_schemas import PG_URL

    from storage import upgrade

    start = (time.perf_counter(), _cpu())
    if ctx.sqlite:
        return _row("db-outage", start, faults={}, lost=0, **{"paid twice": "-", "tracebacks": 0},
                    note="skipped: needs Postgres (run without --sqlite)")
    spec = importlib.util.spec_from_file_location("db_outage", ROOT / "bench" / "db_outage.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    direct = ctx.db_url(f"outage-{uuid.uuid4().hex[:6]}")
    upgrade(direct)
    target = sa.make_url(PG_URL)
    args = argparse.Namespace(total=8, long_outage_s=2.0, window_s=3.0, lab_latency=0.5)
    handler = _Records()
    logging.getLogger().addHandler(handler)
    try:
        with PgForwarder((target.host or "127.0.0.1", target.port or 5432)) as fwd:
            run = bench.one_run("2s", args, direct, fwd)
    finally:
        logging.getLogger().removeHandler(handler)
    return _row("db-outage", start, outages=int(run["hit"]), faults={"2 s outage": int(run["hit"])},
                lost=run["lost"] + (0 if run["completed"] else 1),
                **{"paid twice": run["paid_twice"] + run["posted_twice"],
                   "tracebacks": sum(r.exc_info is not None for r in handler.records)},
                note=f"finished without resume: {run['finished']}"
                     f"{'; ' + run['error'] if run['error'] else ''}")


#: name -> scenario; each returns a row with the COLUMNS
SCENARIOS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "sigkill+proxy": scenario_kills,
    "bad-lab": scenario_bad_lab,
    "two-drivers": scenario_two_drivers,
    "db-outage": scenario_db_outage,
}


@contextmanager
def _databases(workdir: Path, sqlite: bool) -> Iterator[Callable[[str], str]]:
    if sqlite:
        yield lambda name: f"sqlite:///{workdir / (name + '.db')}"
        return
    from pg_schemas import admin_sql, postgres_problem, postgres_schema_url

    problem = postgres_problem()
    if problem:
        raise SystemExit(f"bench/chaos.py: {problem}; run with --sqlite")
    schemas: list[str] = []

    def url(name: str) -> str:
        schemas.append(f"chaos_{uuid.uuid4().hex[:12]}")
        admin_sql(f"CREATE SCHEMA {schemas[-1]}")
        return postgres_schema_url(schemas[-1])
    try:
        yield url
    finally:
        for schema in schemas:
            admin_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _tiny_prior(folder: Path) -> str:
    import torch

    from optimizer.priors.mlp import MLPDiffusionConfig, MLPDiffusionPrior

    torch.manual_seed(0)
    prior = MLPDiffusionPrior(MLPDiffusionConfig(dim=2, hidden=16, num_blocks=1, time_embed_dim=8,
                                                 num_train_timesteps=100))
    prior.save_pretrained(folder / "tiny-mlp")
    return str(folder / "tiny-mlp")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, dict):
        return f"{sum(value.values())} (" + ", ".join(f"{k} {v}" for k, v in sorted(value.items())) + ")"
    return str(value)


def print_table(rows: list[dict[str, Any]], out: io.TextIOBase | Any = sys.stdout) -> None:
    """The rows as a Markdown table (plus each row's note)."""
    print("| " + " | ".join(COLUMNS) + " | note |", file=out)
    print("|" + "---|" * (len(COLUMNS) + 1), file=out)
    for row in rows:
        print("| " + " | ".join(_fmt(row.get(c, "")) for c in COLUMNS)
              + f" | {row.get('note', '')} |", file=out)


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios and print the table; exit 1 when anything was lost, paid twice or
    ended in a traceback."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs in the kill scenario")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every scenario, interleaved")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), default=None)
    parser.add_argument("--sqlite", action="store_true", help="SQLite files instead of Postgres")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the scenarios' WARNINGs are counted, not shown
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp, \
                _databases(Path(tmp), args.sqlite) as db_url:
            ctx = Context(Path(tmp), db_url, ray.get_runtime_context().gcs_address,
                          _tiny_prior(Path(tmp)), args.kills, args.seed, args.sqlite)
            for rep in range(args.repeat):
                for name in args.only or SCENARIOS:
                    ctx.seed = args.seed + rep
                    rows.append(SCENARIOS[name](ctx))
                    print(f"[{time.strftime('%H:%M:%S')}] {name} (run {rep + 1}) done", flush=True)
    finally:
        ray.shutdown()
    print(f"\nchaos: {args.kills} kills per campaign, storage "
          f"{'SQLite' if args.sqlite else 'Postgres'}, {os.cpu_count()} CPUs")
    print_table(rows)
    bad = [r for r in rows if r["lost"] or r["tracebacks"] or r["paid twice"] not in (0, "-")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
