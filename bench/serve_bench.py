"""Benchmark of ``tiltloop serve`` (issue 12): the pull API under 100 lab clients, and 20
campaigns driven by one service process.

Part 1 — pull latency. One ``tiltloop serve`` process (its scheduler drives the pull campaign,
which has its whole budget queued) and 100 concurrent lab clients (asyncio + httpx, one process)
that claim one item, measure it for ``--measure`` seconds (jittered), report it, and claim again,
for ``--seconds``. Printed: p50 / p99 / max latency of claim and of report, requests/s, the
service's CPU time per request, and p99 against the 50 ms goal. Then ``--saturation-s``
seconds with no measuring time: the clients then only wait on the service, so latency =
clients / throughput, which shows this machine's capacity rather than a lab's experience.
Side by side, interleaved in ``--repeats`` blocks: the same claim+report made by ONE client
over HTTP and made directly on the storage API in this process, so the ratio shows
what HTTP + auth + the app add to the database work.

Part 2 — 20 campaigns. One ``tiltloop serve`` drives ``--campaigns`` campaigns (bundled manifold
prior, the lab simulator as a separate process with ``--lab-latency`` seconds per evaluation).
Printed: time until all complete, the service process's CPU seconds per query (its own process;
Ray worker processes separately), and per campaign the fraction of its active time that its
oracle had its allowed queries (``max_in_flight``) in flight, sampled every 0.5 s.

Both parts use the real Postgres (``TILTLOOP_TEST_DATABASE_URL``), one fresh schema each, dropped
afterwards. The machine's load average is printed before and after (other work shares the CPUs).

    .venv/bin/python bench/serve_bench.py                       # both parts (~6 min on 2 cores)
    .venv/bin/python bench/serve_bench.py --part pull --seconds 20
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from optimizer.campaign.config_io import parse_config  # noqa: E402
from optimizer.campaign.service import open_storage, start_or_resume  # noqa: E402
from storage import NewCandidate, Storage  # noqa: E402

PG_URL = os.environ.get("TILTLOOP_TEST_DATABASE_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
GOAL_P99_MS = 50.0


# ---- plumbing --------------------------------------------------------------------------------
def _admin(sql: str) -> None:
    libpq = sa.make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def _schema_url(schema: str) -> str:
    url = sa.make_url(PG_URL).set(drivername="postgresql+psycopg")
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


class Schema:
    """A fresh Postgres schema for one part, dropped on exit."""

    def __enter__(self) -> str:
        self.name = f"bench_{uuid.uuid4().hex[:12]}"
        _admin(f"CREATE SCHEMA {self.name}")
        return _schema_url(self.name)

    def __exit__(self, *exc: object) -> None:
        _admin(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


class Serve:
    """``tiltloop serve`` as a subprocess on a free loopback port."""

    def __init__(self, url: str, log: Path, *extra: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                          os.environ.get("PYTHONPATH")]))}
        self.log = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "optimizer.cli", "serve", "--url", url,
                                      "--port", "0", *extra], stdout=subprocess.PIPE,
                                     stderr=self.log, env=env, text=True)
        self.base = self._read_url(log)
        self._settle()

    def _settle(self, timeout_s: float = 90.0) -> None:
        """Wait until the service and the Ray it started are idle (Ray's agents and prestarted
        workers take tens of seconds of CPU at start), so start-up does not count as load."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            before = self.cpu_s() + self.worker_cpu_s()
            time.sleep(2.0)
            if (self.cpu_s() + self.worker_cpu_s() - before) / 2.0 < 0.1:
                return

    def _read_url(self, log: Path, timeout_s: float = 120.0) -> str:
        found: list[str] = []

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                m = re.search(r"http://127\.0\.0\.1:\d+", line)
                if m:
                    found.append(m.group(0))
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout_s)
        if not found:
            self.stop()
            raise RuntimeError(f"tiltloop serve printed no URL within {timeout_s:.0f} s; "
                               f"its log: {log}\n{log.read_text()[-2000:]}")
        return found[0]

    def cpu_s(self) -> float:
        return _cpu_s(self.proc.pid)

    def worker_cpu_s(self) -> float:
        total = 0.0
        for pid in _descendants(self.proc.pid):
            try:
                total += _cpu_s(pid)
            except OSError:
                pass
        return total

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---- part 1: pull latency --------------------------------------------------------------------
def _queue(storage: Storage, name: str, items: int) -> None:
    rng = np.random.default_rng(0)
    per = 1000
    for r in range(0, items, per):
        n = min(per, items - r)
        storage.record_round(name, r // per, alpha=1.0, oracle_name="pull",
                             candidates=[NewCandidate(rng.normal(size=2)) for _ in range(n)],
                             selected=list(range(n)))


async def _lab(base: str, secret: str, name: str, i: int, until: float,
               lat: dict[str, list[float]], client: httpx.AsyncClient, measure_s: float) -> None:
    """One lab client: claim an item, measure it for ~``measure_s`` (jittered), report, repeat."""
    headers = {"Authorization": f"Bearer {secret}"}
    rng = np.random.default_rng(i)
    await asyncio.sleep(rng.uniform(0, measure_s))  # labs do not start in lockstep
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        r = await client.post(f"{base}/v1/campaigns/{name}/claims", headers=headers,
                              json={"client_id": f"lab-{i}", "request_id": uuid.uuid4().hex,
                                    "max_items": 1})
        lat["claim"].append(time.perf_counter() - t0)
        r.raise_for_status()
        items = r.json()["items"]
        if not items:
            lat["empty"].append(1.0)
            await asyncio.sleep(0.05)
            continue
        key = items[0]["key"]
        if measure_s:
            await asyncio.sleep(rng.uniform(0.5, 1.5) * measure_s)
        t0 = time.perf_counter()
        r = await client.post(f"{base}/v1/campaigns/{name}/reports", headers=headers,
                              json={"client_id": f"lab-{i}", "key": key,
                                    "values": {"y": float(np.sum(items[0]["design"]))}})
        lat["report"].append(time.perf_counter() - t0)
        r.raise_for_status()


async def _many(base: str, secret: str, name: str, clients: int, seconds: float,
                measure_s: float) -> dict[str, list[float]]:
    lat: dict[str, list[float]] = {"claim": [], "report": [], "empty": []}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
        until = time.perf_counter() + seconds
        await asyncio.gather(*[_lab(base, secret, name, i, until, lat, client, measure_s)
                               for i in range(clients)])
    return lat


def _one_http(base: str, secret: str, name: str, n: int, http: httpx.Client) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = http.post(f"{base}/v1/campaigns/{name}/claims",
                      headers={"Authorization": f"Bearer {secret}"},
                      json={"client_id": "solo-http", "request_id": uuid.uuid4().hex, "max_items": 1})
        key = r.json()["items"][0]["key"]
        http.post(f"{base}/v1/campaigns/{name}/reports",
                  headers={"Authorization": f"Bearer {secret}"},
                  json={"client_id": "solo-http", "key": key, "values": {"y": 0.0}})
        out.append(time.perf_counter() - t0)
    return out


def _one_direct(storage: Storage, name: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        q = storage.claim_work(name, "solo-direct", uuid.uuid4().hex, 1, 3600.0)[0]
        storage.report_work(q.key, "solo-direct", values={"y": 0.0})
        out.append(time.perf_counter() - t0)
    return out


def part_pull(args: argparse.Namespace, workdir: Path) -> None:
    name = "pull-bench"
    with Schema() as url:
        storage = open_storage(url, create=True)
        items = args.items
        cfg = parse_config({"name": name, "prior": {"name": "gmm-toy"},
                            "oracle": {"kind": "pull", "lease_s": 600.0},
                            "objectives": [{"name": "y"}],
                            "budget": {"q": 4, "total": items}, "storage": {"url": url}}, "<bench>")
        start_or_resume(cfg, storage, source="bench")
        t0 = time.perf_counter()
        _queue(storage, name, items)
        print(f"queued {items} items in {time.perf_counter() - t0:.1f} s")
        _, secret = storage.create_token([f"lab:{name}"])
        serve = Serve(url, workdir / "serve-pull.log")
        try:
            http = httpx.Client(timeout=30.0)
            _one_http(serve.base, secret, name, 20, http)  # warm: connections, token cache
            _one_direct(storage, name, 20)
            solo_http: list[float] = []
            solo_direct: list[float] = []
            for _ in range(args.repeats):  # interleaved blocks, so load swings hit both alike
                solo_http += _one_http(serve.base, secret, name, 100, http)
                solo_direct += _one_direct(storage, name, 100)
            http.close()
            print(f"\none client, claim+report, {args.repeats} interleaved blocks of 100 (load {_load()}):")
            h, d = statistics.median(solo_http), statistics.median(solo_direct)
            for label, mid, xs in (("over HTTP (service) ", h, solo_http),
                                   ("storage API directly", d, solo_direct)):
                print(f"  {label}  p50 {mid * 1e3:7.2f} ms   p99 {_pct(xs, 99) * 1e3:7.2f} ms")
            print(f"  ratio HTTP / direct (p50): {h / d:.2f}")

            for measure_s, seconds in ((args.measure, args.seconds), (0.0, args.saturation_s)):
                _clients_run(serve, secret, name, args.clients, seconds, measure_s)
        finally:
            serve.stop()
            storage.close()


def _clients_run(serve: Serve, secret: str, name: str, clients: int, seconds: float,
                 measure_s: float) -> None:
    cpu0, wall0, pcpu0 = serve.cpu_s(), time.perf_counter(), time.process_time()
    lat = asyncio.run(_many(serve.base, secret, name, clients, seconds, measure_s))
    wall = time.perf_counter() - wall0
    cpu = serve.cpu_s() - cpu0
    requests = len(lat["claim"]) + len(lat["report"])
    what = (f"each measuring ~{measure_s:g} s per item" if measure_s
            else "no measuring time: saturation, i.e. the capacity of this machine")
    print(f"\n{clients} concurrent lab clients for {seconds:.0f} s, {what} (load {_load()}):")
    for kind in ("claim", "report"):
        xs = lat[kind]
        print(f"  {kind:6s}  n={len(xs):6d}  p50 {_pct(xs, 50) * 1e3:7.1f} ms  "
              f"p99 {_pct(xs, 99) * 1e3:7.1f} ms  max {max(xs) * 1e3:7.1f} ms")
    print(f"  empty claims (queue drained): {len(lat['empty'])}")
    print(f"  requests/s {requests / wall:.0f}; service CPU {cpu:.1f} s in {wall:.1f} s wall = "
          f"{cpu / max(requests, 1) * 1e3:.2f} ms per request; clients' CPU "
          f"{time.process_time() - pcpu0:.1f} s")
    if measure_s:
        p99 = _pct(lat["claim"], 99) * 1e3
        print(f"  claim p99 / goal ({GOAL_P99_MS:.0f} ms) = {p99 / GOAL_P99_MS:.2f} "
              f"({'met' if p99 <= GOAL_P99_MS else 'NOT met'})")


# ---- part 2: 20 campaigns --------------------------------------------------------------------
def part_campaigns(args: argparse.Namespace, workdir: Path) -> None:
    from oracles.labsim import LabSimulatorProcess

    names = [f"c{i:02d}" for i in range(args.campaigns)]
    budget, limit = args.budget, 2
    with LabSimulatorProcess(["--function", "manifold", "--latency", str(args.lab_latency)],
                             log_path=workdir / "labsim.log") as lab, Schema() as url:
        storage = open_storage(url, create=True)
        # the service first (it settles: Ray's start-up is not counted), then the campaigns
        serve = Serve(url, workdir / "serve-campaigns.log", "--max-campaigns", str(args.campaigns))
        t0, cpu0, wcpu0 = time.perf_counter(), serve.cpu_s(), serve.worker_cpu_s()
        for i, name in enumerate(names):
            cfg = parse_config({
                "name": name, "seed": i, "prior": {"name": "manifold"},
                "oracle": {"kind": "http", "base_url": lab.url, "timeout_s": 30.0},
                "objectives": [{"name": "value"}], "sampler": {"num_steps": 10},
                "workers": {"count": 1, "particles_per_worker": 32, "cpus_per_worker": 0.5},
                "budget": {"q": 2, "max_in_flight": limit, "total": budget, "poll_interval_s": 0.2},
                "storage": {"url": url}}, "<bench>")
            start_or_resume(cfg, storage, source="bench")
        busy: dict[str, list[float]] = {n: [] for n in names}
        deadline = t0 + args.timeout
        try:
            while time.perf_counter() < deadline:
                active = 0
                for rec in storage.list_campaigns():
                    if rec.status != "active":
                        continue
                    active += 1
                    c = storage.query_counts(rec.name)
                    busy[rec.name].append(min(1.0, (c["dispatched"] + c["running"]) / limit))
                if not active:
                    break
                time.sleep(0.5)
            wall = time.perf_counter() - t0
            cpu, workers_cpu = serve.cpu_s() - cpu0, serve.worker_cpu_s() - wcpu0
        finally:
            serve.stop()
        done = [r.name for r in storage.list_campaigns() if r.status == "completed"]
        others = {r.name: r.status for r in storage.list_campaigns() if r.status != "completed"}
        queries = sum(storage.query_counts(n)["succeeded"] + storage.query_counts(n)["failed"]
                      for n in names)
        storage.close()
    fractions = [statistics.mean(v) for v in busy.values() if v]
    print(f"\n{args.campaigns} campaigns in one service process (budget {budget} each, "
          f"lab latency {args.lab_latency:g} s; load {_load()}):")
    print(f"  completed {len(done)}/{len(names)} in {wall:.0f} s; {queries} queries"
          + (f"; not completed: {others}" if others else ""))
    print(f"  service process CPU {cpu:.1f} s = {cpu / max(queries, 1) * 1e3:.0f} ms per query; "
          f"its child processes (Ray) {workers_cpu:.1f} s")
    if fractions:
        print(f"  oracle busy (queries in flight / allowed, while active): mean "
              f"{statistics.mean(fractions):.2f}, min {min(fractions):.2f}, max {max(fractions):.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("pull", "campaigns", "both"), default="both")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--measure", type=float, default=2.0,
                   help="seconds a lab client spends measuring each item (jittered ±50%%)")
    p.add_argument("--saturation-s", type=float, default=15.0,
                   help="seconds of the run with no measuring time (capacity)")
    p.add_argument("--items", type=int, default=30_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--campaigns", type=int, default=20)
    p.add_argument("--budget", type=int, default=8)
    p.add_argument("--lab-latency", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=900.0)
    args = p.parse_args(argv)
    print(f"load average before: {_load()} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        if args.part in ("pull", "both"):
            part_pull(args, Path(tmp))
        if args.part in ("campaigns", "both"):
            part_campaigns(args, Path(tmp))
    print(f"load average after: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
