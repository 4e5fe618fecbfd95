"""The campaign dashboard with many results in Debian's Chromium: a baseline revision of the
code ("before", by default the dashboard that re-read and redrew everything on each change) and
this tree ("after"), side by side in one run, interleaved and repeated.

One SQLite campaign with ``--results`` succeeded queries (rounds of ``--per-round``, with
surrogate predictions and ESS / λ traces) is seeded once and copied for each side; each side's
service runs in its own process (``git archive BASELINE`` for "before"). Per run, in a fresh
browser context:

- first load: time to the first plot and until every view is drawn (from navigation start);
- one live update: a round of ``--per-round`` new queries recorded and finished in the database
  while the page is open; the time from the last write until the page shows every new result,
  and the bytes the page read for it;
- over each phase: CPU seconds of the side's server process and of the browser processes, and
  the load average.

It prints every run, then the medians and the after / before ratios.

    python bench/dashboard_bench.py --results 10000 --repeat 3
"""
from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
#: The dashboard before incremental live updates (issue 13): every change re-read the whole
#: bundle (designs and all) and redrew every view.
BASELINE = "df3310d"
_SERVE = """
import sys, uvicorn
from optimizer.service.app import create_app
from storage import Storage
storage = Storage.open(sys.argv[1], check_schema=False)
uvicorn.run(create_app(storage), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            lifespan="off")
"""


def seed(storage, name: str, results: int, per_round: int) -> None:  # type: ignore[no-untyped-def]
    from optimizer.campaign.config_io import parse_config

    config = parse_config({
        "name": name, "seed": 3, "prior": {"name": "bench-prior"}, "oracle": {"kind": "pull"},
        "objectives": [{"name": "y", "direction": "maximize"}], "feature_map": {"kind": "identity"},
        "sampler": {"alpha": 0.5, "num_steps": 8},
        "workers": {"count": 1, "particles_per_worker": max(16, per_round), "cpus_per_worker": 0.5},
        "budget": {"q": per_round, "max_in_flight": per_round, "total": results * 10}}, "bench")
    storage.create_campaign(name, config.to_json_dict(), budget=results * 10)
    rng = np.random.default_rng(0)
    for r in range(results // per_round):
        add_round(storage, name, r, per_round, rng)


def add_round(storage, name: str, r: int, n: int, rng: np.random.Generator) -> None:  # type: ignore[no-untyped-def]
    """Record round ``r`` with ``n`` selected candidates and give every query a result."""
    from storage import NewCandidate

    cands = [NewCandidate(design=rng.normal(size=8).astype(np.float32),
                          surrogate_mean=float(rng.normal(r * 0.01)), surrogate_std=0.3)
             for _ in range(n)]
    summary = {"particles": n, "chunks": 1, "ess": [list(np.linspace(n, 4, 20))],
               "lambdas": [list(np.linspace(0, 1, 20))]}
    rec = storage.record_round(name, r, alpha=0.5, candidates=cands, selected=list(range(n)),
                               oracle_name="pull", summary=summary)
    for key in rec.query_keys:
        storage.transition_query(key, expected="pending", new="dispatched")
        storage.transition_query(key, expected="dispatched", new="succeeded",
                                 values={"y": float(rng.normal(r * 0.01))})


@dataclass
class Side:
    """One side of the comparison: its code, its database copy, its server process."""

    name: str
    root: Path
    url: str
    secret: str = ""
    proc: subprocess.Popen | None = None  # type: ignore[type-arg]
    base: str = ""
    next_round: int = 0
    runs: list[dict[str, float]] = field(default_factory=list)

    def start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(self.root)}
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVE, self.url, str(port)],
                                     cwd=self.root, env=env)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"the {self.name} server exited with {self.proc.returncode}")
            time.sleep(0.1)
        raise SystemExit(f"the {self.name} server did not answer /healthz within 60 s")

    def cpu(self) -> float:
        assert self.proc is not None
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


def copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of SQLite file ``src`` (its write-ahead log included)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


def browser_cpu(servers: set[int]) -> float:
    """CPU seconds of this process's descendants that are not a server (Playwright's driver and
    the Chromium processes)."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid in servers or child.ppid() in servers:
                continue
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def one_run(browser: Any, side: Side, servers: set[int], per_round: int, name: str) -> dict[str, float]:
    from storage import Storage

    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(180_000)
    page.goto(f"{side.base}/login")
    page.fill("#token", side.secret)
    page.click("#login-submit")
    page.wait_for_selector("body[data-ready='1']")
    s0, b0 = side.cpu(), browser_cpu(servers)
    page.goto(f"{side.base}/campaigns/{name}")
    page.wait_for_selector("body[data-ready='1']")
    ready = page.evaluate("performance.now()")
    first = page.evaluate("window.TL_FIRST_PLOT_MS")
    load_bytes = page.evaluate("performance.getEntriesByType('resource').filter((e) => "
                               "e.name.includes('/dashboard')).reduce((a, e) => a + e.encodedBodySize, 0)")
    s1, b1 = side.cpu(), browser_cpu(servers)
    page.wait_for_selector("#live.on")
    time.sleep(0.5)  # the page is idle: its event stream is open
    before = int(page.get_attribute("body", "data-results") or 0)
    s2, b2 = side.cpu(), browser_cpu(servers)
    with Storage.open(side.url, check_schema=False) as storage:
        add_round(storage, name, side.next_round, per_round,
                  np.random.default_rng(1000 + side.next_round))
    side.next_round += 1
    written = time.perf_counter()
    page.wait_for_selector(f"body[data-results='{before + per_round}']")
    shown = (time.perf_counter() - written) * 1000
    time.sleep(0.3)  # let a refresh that is still drawing finish before reading the CPU
    s3, b3 = side.cpu(), browser_cpu(servers)
    update_bytes = page.evaluate("performance.getEntriesByType('resource').filter((e) => "
                                 "e.name.includes('/dashboard')).reduce((a, e) => a + e.encodedBodySize, 0)")
    ctx.close()
    return {"first_ms": first, "ready_ms": ready, "load_kb": load_bytes / 1024,
            "load_server_cpu": s1 - s0, "load_browser_cpu": b1 - b0,
            "update_ms": shown, "update_kb": (update_bytes - load_bytes) / 1024,
            "update_server_cpu": s3 - s2, "update_browser_cpu": b3 - b2,
            "load1": os.getloadavg()[0]}


FIELDS = [("first_ms", "first plot ms"), ("ready_ms", "all views ms"), ("load_kb", "load KiB"),
          ("load_server_cpu", "load server CPU s"), ("load_browser_cpu", "load browser CPU s"),
          ("update_ms", "+N update ms"), ("update_kb", "update KiB"),
          ("update_server_cpu", "update server CPU s"),
          ("update_browser_cpu", "update browser CPU s"), ("load1", "load avg 1 min")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=10_000)
    parser.add_argument("--per-round", type=int, default=100, help="also the live update's size")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE,
                        help=f"git revision of the 'before' side (default {BASELINE})")
    parser.add_argument("--db", default=None, help="reuse this seeded SQLite file (seeded if new)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from storage import Storage, upgrade

    folder = Path(tempfile.mkdtemp(prefix="tiltloop-dash-bench-"))
    seeded = Path(args.db) if args.db else folder / "seed.db"
    name = "bench"
    if not seeded.exists():
        upgrade(f"sqlite:///{seeded}")
        t0 = time.perf_counter()
        with Storage.open(f"sqlite:///{seeded}") as st:
            seed(st, name, args.results, args.per_round)
        print(f"seeded {args.results} results in {time.perf_counter() - t0:.1f} s ({seeded})")
    upgrade(f"sqlite:///{seeded}")
    old = folder / "before-src"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    sides = [Side("before", old, ""), Side("after", ROOT, "")]
    for side in sides:
        db = folder / f"{side.name}.db"
        copy_db(seeded, db)
        side.url = f"sqlite:///{db}"
        with Storage.open(side.url) as st:
            side.secret = st.create_token(["read"], note="dashboard bench")[1]
            side.next_round = len(st.list_rounds(name))
        side.start()
    servers = {s.proc.pid for s in sides if s.proc is not None}
    print(f"before: {args.baseline} ({old}); after: {ROOT}; {args.results} results, live update "
          f"+{args.per_round}; {args.repeat} runs each, interleaved; {os.cpu_count()} CPUs")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            for rep in range(args.repeat):
                for side in (sides if rep % 2 == 0 else sides[::-1]):
                    run = one_run(browser, side, servers, args.per_round, name)
                    side.runs.append(run)
                    print(f"run {rep + 1} {side.name:>6}: " + ", ".join(
                        f"{label} {run[k]:.2f}" if "cpu" in k or k == "load1" else
                        f"{label} {run[k]:.0f}" for k, label in FIELDS), flush=True)
            browser.close()
    finally:
        for side in sides:
            side.stop()
    print(f"\nmedians of {args.repeat} runs        before      after   after/before")
    for k, label in FIELDS:
        b = statistics.median(r[k] for r in sides[0].runs)
        a = statistics.median(r[k] for r in sides[1].runs)
        ratio = f"{a / b:10.2f}" if b else "         —"
        print(f"{label:<24}{b:11.2f}{a:11.2f}{ratio}")
    load = os.getloadavg()
    print(f"load average now {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
