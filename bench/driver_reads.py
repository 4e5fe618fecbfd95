"""History load and the driver's per-round reads on Postgres: before (the previous code paths,
reproduced here) vs after (``Storage.load_history``, the driver's history cache), in one run.

1. history load of a campaign of N succeeded queries (designs of 32 float32, two objective
   values and one noise value per query, distinct per row), for N in ``--sizes``: the previous
   decode (JSON columns decoded per value by psycopg, one design and one record at a time, a
   Python call per timestamp) and the current ``load_history``, interleaved, best of
   ``--repeat``, wall and process CPU seconds;
2. reads around one round of the driver at campaign lengths ``--lengths`` (rounds of 100
   queries): before, the reads the driver made (every round with its query keys, the whole
   history, every round's state twice); after, the driver's own methods (``_round_inputs``,
   ``_close_rounds``, ``_status``) over its history cache. Statements and rows are counted at
   the DBAPI cursor (``after_cursor_execute``; psycopg's rowcount of a SELECT is its rows).

    .venv/bin/python bench/driver_reads.py [--sizes 10000 100000] [--lengths 1000 10000]
"""
from __future__ import annotations

import argparse
import functools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import numpy as np
import psycopg
import sqlalchemy as sa

from optimizer.campaign.config_io import parse_config
from optimizer.campaign.driver import CampaignDriver
from storage import NewCandidate, QueryRecord, Storage, upgrade
from storage.read_counter import ReadCounter
from storage.arrays import decode_array
from storage.history import split_history
from storage.models import Campaign, Candidate, OracleQuery, Round

PG_URL = os.environ.get("TILTLOOP_TEST_DATABASE_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class _PerValueUTC(sa.types.TypeDecorator):
    """The timestamp type as it was: a Python call per value on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


def legacy_load_history(storage: Storage, campaign: str, with_design: bool = True) -> Any:
    """``load_history`` as it was before the bulk decode (same SELECT, per-row decoding)."""
    q = OracleQuery.__table__.c
    ts = [sa.type_coerce(c, _PerValueUTC()).label(c.name) for c in
          (q.lease_expires_at, q.created_at, q.updated_at, q.dispatched_at, q.finished_at)]
    cols: list[Any] = [q.idempotency_key, Campaign.name.label("campaign"), Round.round_index,
                       Candidate.candidate_index, q.oracle_name, q.status, q.external_job_id,
                       q.attempts, q.result_values, q.noise, q.error, q.lease_owner, *ts]
    if with_design:
        cols += [Candidate.design, Candidate.design_dtype, Candidate.design_shape]
    with storage.session() as session:
        cid = storage._campaign_id(session, campaign)
        rows = session.connection().execute(
            sa.select(*cols).join(Candidate, OracleQuery.candidate_id == Candidate.id)
            .join(Round, Candidate.round_id == Round.id)
            .join(Campaign, OracleQuery.campaign_id == Campaign.id)
            .where(OracleQuery.campaign_id == cid).order_by(OracleQuery.id)).all()
    records = []
    for row in rows:
        m = row._mapping
        design = None
        if "design" in m:
            design = decode_array(m["design"], m["design_dtype"], m["design_shape"])
        records.append(QueryRecord(
            key=m["idempotency_key"], campaign=m["campaign"], round_index=m["round_index"],
            candidate_index=m["candidate_index"], oracle_name=m["oracle_name"],
            status=m["status"], job_id=m["external_job_id"], attempts=m["attempts"],
            values=m["result_values"], noise=m["noise"], error=m["error"],
            lease_owner=m["lease_owner"], lease_expires_at=m["lease_expires_at"],
            created_at=m["created_at"], updated_at=m["updated_at"],
            dispatched_at=m["dispatched_at"], finished_at=m["finished_at"], design=design))
    return split_history(campaign, records)


def _seed(storage: Storage, name: str, queries: int, per_round: int, seed: int) -> None:
    """A campaign of ``queries`` succeeded queries in rounds of ``per_round`` (setup)."""
    rng = np.random.default_rng(seed)
    storage.create_campaign(name, {"bench": True})
    for r in range(queries // per_round):
        designs = rng.normal(size=(per_round, 32)).astype(np.float32)
        storage.record_round(name, r, alpha=0.1, candidates=[NewCandidate(x) for x in designs],
                             selected=list(range(per_round)), oracle_name="lab",
                             summary={"tilted": r > 0})
        storage.update_round(name, r, status="complete")
    with storage.session() as session:
        cid = storage._campaign_id(session, name)
        session.execute(sa.text(
            "UPDATE oracle_query SET status = 'succeeded', finished_at = now(), "
            "result_values = jsonb_build_object('y', random(), 'cost', random()), "
            "noise = jsonb_build_object('y', random() / 10) WHERE campaign_id = :cid"),
            {"cid": cid})
        session.execute(sa.text("ANALYZE"))


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def history_loads(storage: Storage, sizes: list[int], repeat: int) -> None:
    print(f"\n1. history load on Postgres (best of {repeat}, interleaved; wall / process CPU s)")
    print(f"{'queries':>8} {'designs':>8} {'before wall':>12} {'cpu':>7} {'after wall':>11} "
          f"{'cpu':>7} {'wall x':>7} {'cpu x':>6}")
    for n in sizes:
        name = f"h{n}"
        _seed(storage, name, n, min(n, 10_000), n)
        for with_design in (True, False):
            ref = storage.load_history(name, with_design=with_design)
            old = legacy_load_history(storage, name, with_design)
            assert [q.values for q in ref.completed] == [q.values for q in old.completed]
            if with_design:
                assert np.array_equal(ref.X(), old.X())
            best: dict[str, tuple[float, float]] = {}
            for _ in range(repeat):
                for label, fn in (
                        ("before", functools.partial(legacy_load_history, storage, name, with_design)),
                        ("after", functools.partial(storage.load_history, name,
                                                    with_design=with_design))):
                    w, c = _timed(fn)
                    if label not in best or w < best[label][0]:
                        best[label] = (w, c)
            (bw, bc), (aw, ac) = best["before"], best["after"]
            print(f"{n:>8} {'yes' if with_design else 'no':>8} {bw:>12.3f} {bc:>7.3f} {aw:>11.3f} "
                  f"{ac:>7.3f} {bw / aw:>7.1f} {bc / ac:>6.1f}", flush=True)


def _legacy_round_reads(storage: Storage, name: str) -> None:
    """The reads the driver made around one round before the history cache."""
    rounds = storage.list_rounds(name)  # _round_inputs: index, tilted rounds
    tilted = [r for r in rounds if (r.summary or {}).get("tilted")]
    if tilted:
        storage.load_round(name, tilted[-1].index)
    legacy_load_history(storage, name)  # _round_inputs: the whole history
    storage.round_states(name)  # _close_rounds
    storage.rounds_in_flight(name)
    storage.load_campaign(name)  # campaign_status
    storage.query_counts(name)
    storage.round_states(name)


def _driver_round_reads(driver: CampaignDriver) -> None:
    """The same reads now: the driver's own methods over its history cache."""
    driver._round_inputs()
    driver._close_rounds()
    driver._status()


def round_reads(storage: Storage, url: str, lengths: list[int], lab_url: str) -> None:
    print("\n2. reads around one round of the driver (statements / rows read; rounds of 100)")
    print(f"{'queries':>8} {'before stmts':>13} {'rows':>8} {'wall s':>7} {'after stmts':>12} "
          f"{'rows':>6} {'wall s':>7} {'rows x':>7}")
    per_length: dict[int, tuple[int, int]] = {}
    for n in lengths:
        name = f"d{n}"
        _seed(storage, name, n, 100, n + 1)
        cfg = parse_config({
            "name": name, "prior": {"name": "gmm-toy"}, "objectives": [{"name": "y"}],
            "oracle": {"kind": "http", "options": {"base_url": lab_url, "objectives": ["y"]}},
            "storage": {"url": url}}, "bench")
        driver = CampaignDriver(cfg, storage, _NoOracle())
        driver._round_inputs()  # a fresh driver reads everything once
        driver._status()
        rng = np.random.default_rng(0)
        index = driver.history.next_round_index
        storage.record_round(name, index, alpha=0.1,
                             candidates=[NewCandidate(x) for x in rng.normal(size=(4, 32))],
                             selected=[0, 1, 2, 3], oracle_name="lab", summary={"tilted": True})
        with ReadCounter(storage.engine) as before:
            bw = _timed(functools.partial(_legacy_round_reads, storage, name))[0]
        with ReadCounter(storage.engine) as after:
            aw = _timed(functools.partial(_driver_round_reads, driver))[0]
        driver.close()
        per_length[n] = (after.statements, after.rows)
        print(f"{n:>8} {before.statements:>13} {before.rows:>8} {bw:>7.3f} {after.statements:>12} "
              f"{after.rows:>6} {aw:>7.3f} {before.rows / max(after.rows, 1):>7.0f}", flush=True)
    a, b = lengths[0], lengths[-1]
    print(f"after: {b}-query campaign reads {per_length[b][1]} rows a round vs {per_length[a][1]} "
          f"at {a} (statements {per_length[b][0]} vs {per_length[a][0]})")


class _NoOracle:
    """The bench never dispatches: an oracle object the dispatcher can hold and close."""

    name = "lab"

    def close(self) -> None:
        pass


def sizes_args(doc: str | None) -> argparse.Namespace:
    """The arguments of this bench and ``history_load.py``: history sizes, campaign lengths,
    repeats and the Postgres server."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default=PG_URL)
    return parser.parse_args()


@contextmanager
def bench_schema(postgres: str, **query: str) -> Iterator[tuple[str, str]]:
    """A fresh schema on ``postgres``, migrated, dropped afterwards: yields its storage URL
    (``query``: more connection options, e.g. ``application_name``; ``options`` gets the
    search path prepended) and the admin URL; prints the load before and after."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.make_url(postgres).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = sa.make_url(postgres).set(drivername="postgresql+psycopg")
    options = f"-csearch_path={schema} {query.pop('options', '')}".strip()
    url_text = url.update_query_dict({"options": options, **query}).render_as_string(False)
    print(f"load before: {open('/proc/loadavg').read().strip()}")
    try:
        upgrade(url_text)
        yield url_text, admin
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    print(f"load after: {open('/proc/loadavg').read().strip()}")


def main() -> None:
    args = sizes_args(__doc__)
    with bench_schema(args.postgres) as (url_text, _), \
            Storage.open(url_text, actor="bench") as storage:
        history_loads(storage, args.sizes, args.repeat)
        round_reads(storage, url_text, args.lengths, "http://127.0.0.1:9")


if __name__ == "__main__":
    main()
