"""Benchmark: what a database outage mid-campaign costs (issue 18, database resilience).

One small campaign (bundled ``gmm-toy`` prior, the lab simulator over HTTP on loopback with
``--lab-latency`` s per evaluation, real Postgres behind ``tests/faults/pg_forwarder.py``) is run
in this process, in ``--repeats`` blocks; each block runs, interleaved:

- ``none``: undisturbed (the reference of the block);
- ``2s`` and ``long`` (``--long-outage-s``, default 30 s): connections cut and refused once the
  campaign has results and queries in flight, for that long counted from the driver's first
  refused attempt (default ``storage.outage_window_s`` = 120 s: it rides the outage out);
- ``past-window``: a ``--window-s`` window (default 3 s) and an outage twice as long: the driver
  stops with the resume command; once the database is back the campaign is resumed in this
  process (as a supervisor would), and the pair is timed together.

Per run: whether it finished without a resume; lost (queries not succeeded and evaluations the
lab made that are not stored); paid twice (keys the lab evaluated more than once, and keys it
was POSTed more than once: a submit repeated); wall time and its excess over the block's
undisturbed run; this process's CPU time (the SMC worker is a Ray process of its own); the 1-min
load average at the end of the run (other work shares the CPUs).

    .venv/bin/python bench/db_outage.py                 # ~3 min on 2 shared cores
    .venv/bin/python bench/db_outage.py --repeats 1 --long-outage-s 10
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import sqlalchemy as sa  # noqa: E402
from campaign_configs import campaign_config  # noqa: E402
from campaign_oracles import Bowl  # noqa: E402
from faults.lab_counts import count_posts  # noqa: E402
from faults.pg_forwarder import PgForwarder  # noqa: E402
from pg_schemas import PG_URL, admin_sql, postgres_schema_url  # noqa: E402

from optimizer.campaign.resume import resume_campaign  # noqa: E402
from optimizer.campaign.service import run_campaign  # noqa: E402
from oracles.labsim import LabSimulator  # noqa: E402
from storage import Storage, upgrade  # noqa: E402
from storage.outage import DatabaseOutage  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=2, help="interleaved blocks of the four cases")
    p.add_argument("--total", type=int, default=8, help="queries per campaign")
    p.add_argument("--long-outage-s", type=float, default=30.0)
    p.add_argument("--window-s", type=float, default=3.0, help="window of the past-window case")
    p.add_argument("--lab-latency", type=float, default=0.5, help="seconds per evaluation")
    return p.parse_args()


def wait_mid_campaign(store: Storage, name: str, done: threading.Event, timeout_s: float = 180) -> bool:
    """Wait until results are stored and queries are still at the lab; False if the run ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not done.is_set():
        try:
            c = store.query_counts(name)
            if c["succeeded"] >= 2 and c["dispatched"] + c["running"] > 0:
                return True
        except Exception:  # noqa: BLE001 — the campaign is not created yet
            pass
        time.sleep(0.05)
    return False


def one_run(case: str, args: argparse.Namespace, direct: str, fwd: PgForwarder) -> dict[str, Any]:
    name = f"{case}-{uuid.uuid4().hex[:6]}"
    via = fwd.url(direct)
    outage_s = {"none": 0.0, "2s": 2.0, "long": args.long_outage_s,
                "past-window": 2 * args.window_s}[case]
    window = args.window_s if case == "past-window" else 120.0
    with LabSimulator(Bowl(seed=0, latency_s=args.lab_latency)) as lab, Storage.open(direct) as store:
        posts = count_posts(lab)
        cfg = campaign_config(name, "gmm-toy", lab.url, via, sampler={"num_steps": 6},
                              workers={"count": 1}, storage={"url": via, "outage_window_s": window},
                              budget={"q": 4, "max_in_flight": 8, "total": args.total,
                                      "poll_interval_s": 0.05})
        result: dict[str, Any] = {}
        done = threading.Event()

        def drive() -> None:
            try:
                result["status"] = run_campaign(cfg, url=via)
            except DatabaseOutage as exc:
                result["outage"] = exc
            except Exception as exc:  # noqa: BLE001 — reported in the table
                result["error"] = exc
            finally:
                done.set()

        cpu0, t0 = time.process_time(), time.monotonic()
        thread = threading.Thread(target=drive, daemon=True)
        thread.start()
        hit = False
        if outage_s and wait_mid_campaign(store, name, done):
            fwd.felt_outage(outage_s)
            hit = True
        thread.join(timeout=600)
        resumed = False
        if "outage" in result:
            # The driver stopped; a new process would take its lease over at once (its holder no
            # longer runs). This process still runs, so the stale lease is released first.
            lease = store.campaign_lease(name)
            if lease is not None:
                store.release_campaign_lease(name, lease.owner)
            result["status"] = resume_campaign(name, via)
            resumed = True
        wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
        counts = store.query_counts(name)
        stored = {q.key for q in store.list_queries(name, statuses=("succeeded",))}
        evaluations = dict(lab.store.evaluations)
    status = result.get("status")
    return {
        "case": case, "hit": hit or not outage_s, "wall": wall, "cpu": cpu,
        "finished": getattr(status, "status", None) == "completed" and not resumed,
        "completed": getattr(status, "status", None) == "completed", "resumed": resumed,
        "lost": (args.total - counts["succeeded"]) + len(set(evaluations) - stored),
        "paid_twice": sum(1 for n in evaluations.values() if n > 1),
        "posted_twice": sum(1 for n in posts.values() if n > 1),
        "error": repr(result.get("error")) if "error" in result else "",
        "load": os.getloadavg()[0],
    }


def main() -> int:
    args = parse_args()
    import logging

    import ray

    logging.basicConfig(level=logging.ERROR)  # the driver's outage WARNINGs would flood the table
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin_sql(f"CREATE SCHEMA {schema}")
    direct = postgres_schema_url(schema)
    target = sa.make_url(PG_URL)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows: list[dict[str, Any]] = []
    print(f"db outage bench: {args.repeats} block(s) of none / 2s / {args.long_outage_s:g}s / "
          f"past a {args.window_s:g} s window; {args.total} queries per campaign; load at start "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    try:
        upgrade(direct)
        with PgForwarder((target.host or "127.0.0.1", target.port or 5432)) as fwd:
            one_run("none", args, direct, fwd)  # warm-up (imports, first Ray worker): not counted
            for block in range(args.repeats):
                base = None
                for case in ("none", "2s", "long", "past-window"):
                    row = one_run(case, args, direct, fwd)
                    row["block"] = block
                    if case == "none":
                        base = row["wall"]
                    row["extra"] = row["wall"] - base if base is not None else float("nan")
                    rows.append(row)
                    print(f"  block {block} {case:>11}: finished w/o resume {row['finished']!s:5} "
                          f"completed {row['completed']!s:5} lost {row['lost']} paid twice "
                          f"{row['paid_twice']} posted twice {row['posted_twice']} wall "
                          f"{row['wall']:.1f} s (+{row['extra']:.1f} s) cpu {row['cpu']:.1f} s "
                          f"load {row['load']:.2f}{'' if row['hit'] else ' (outage missed)'}"
                          f"{' ' + row['error'] if row['error'] else ''}", flush=True)
    finally:
        ray.shutdown()
        admin_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    print("\ncase          runs  finished-w/o-resume  completed  lost  paid-twice  posted-twice  "
          "extra-wall(median)  cpu(median)")
    for case in ("none", "2s", "long", "past-window"):
        rs = [r for r in rows if r["case"] == case]
        print(f"{case:<12}  {len(rs):>4}  {sum(r['finished'] for r in rs):>19}  "
              f"{sum(r['completed'] for r in rs):>9}  {sum(r['lost'] for r in rs):>4}  "
              f"{sum(r['paid_twice'] for r in rs):>10}  {sum(r['posted_twice'] for r in rs):>12}  "
              f"{statistics.median(r['extra'] for r in rs):>16.1f} s  "
              f"{statistics.median(r['cpu'] for r in rs):>9.1f} s")
    print(f"load at end {os.getloadavg()[0]:.2f}")
    bad = [r for r in rows if r["lost"] or r["paid_twice"] or not r["completed"] or r["error"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
