"""Time to first plot of the campaign dashboard with many results, in Debian's Chromium.

Builds a SQLite campaign with ``--results`` succeeded queries (rounds of ``--per-round``, with
surrogate predictions and ESS / λ traces), serves the app on 127.0.0.1, logs in with a read token
and opens the campaign page; prints the server's time to build the page's data, the browser's
time to its first plot (navigation start → first Plotly draw) and until every view is drawn, the
CPU time of this process (the server) and of the browser, and the load average.

    python bench/dashboard_bench.py --results 10000
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"


def seed(storage, name: str, results: int, per_round: int) -> None:  # type: ignore[no-untyped-def]
    from optimizer.campaign.config_io import parse_config
    from storage import NewCandidate

    config = parse_config({
        "name": name, "seed": 3, "prior": {"name": "bench-prior"}, "oracle": {"kind": "pull"},
        "objectives": [{"name": "y", "direction": "maximize"}], "feature_map": {"kind": "identity"},
        "sampler": {"alpha": 0.5, "num_steps": 8},
        "workers": {"count": 1, "particles_per_worker": max(16, per_round), "cpus_per_worker": 0.5},
        "budget": {"q": per_round, "max_in_flight": per_round, "total": results}}, "bench")
    storage.create_campaign(name, config.to_json_dict(), budget=results)
    rng = np.random.default_rng(0)
    for r in range(results // per_round):
        cands = [NewCandidate(design=rng.normal(size=8).astype(np.float32),
                              surrogate_mean=float(rng.normal(r * 0.01)), surrogate_std=0.3)
                 for _ in range(per_round)]
        summary = {"particles": per_round, "chunks": 1, "ess": [list(np.linspace(per_round, 4, 20))],
                   "lambdas": [list(np.linspace(0, 1, 20))]}
        rec = storage.record_round(name, r, alpha=0.5, candidates=cands,
                                   selected=list(range(per_round)), oracle_name="pull",
                                   summary=summary)
        for key in rec.query_keys:
            storage.transition_query(key, expected="pending", new="dispatched")
            storage.transition_query(key, expected="dispatched", new="succeeded",
                                     values={"y": float(rng.normal(r * 0.01))})


def _descendants_cpu() -> float:
    """CPU seconds (user + system) of this process's descendants (Playwright's driver and the
    Chromium processes), read while they run."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=10_000)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--db", default=None, help="reuse this SQLite file (seeded if new)")
    args = parser.parse_args()

    import uvicorn
    from playwright.sync_api import sync_playwright

    from optimizer.service.app import create_app
    from optimizer.service.dashboard.data import campaign_bundle
    from storage import Storage, upgrade

    folder = Path(tempfile.mkdtemp(prefix="tiltloop-dash-bench-"))
    db = Path(args.db) if args.db else folder / "bench.db"
    url = f"sqlite:///{db}"
    fresh = not db.exists()
    upgrade(url)
    storage = Storage.open(url)
    name = "bench"
    if fresh:
        t0 = time.perf_counter()
        seed(storage, name, args.results, args.per_round)
        print(f"seeded {args.results} results in {time.perf_counter() - t0:.1f} s ({db})")
    t0 = time.perf_counter()
    bundle = campaign_bundle(storage, name)
    print(f"server: campaign_bundle of {len(bundle['points']['key'])} queries in "
          f"{time.perf_counter() - t0:.2f} s")
    secret = storage.create_token(["read"], note="dashboard bench")[1]

    server = uvicorn.Server(uvicorn.Config(create_app(storage), host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    cpu0, wall0 = os.times(), time.perf_counter()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(f"{base}/login")
        page.fill("#token", secret)
        page.click("#login-submit")
        page.wait_for_selector("body[data-ready='1']")
        page.goto(f"{base}/campaigns/{name}")
        page.wait_for_selector("body[data-ready='1']")
        first = page.evaluate("window.TL_FIRST_PLOT_MS")
        ready = page.evaluate("performance.now()")
        # interactive: a sort of the table answers
        t = time.perf_counter()
        page.click("#top-table th[data-col='round']")
        page.wait_for_selector("#top-table th[data-col='round'][aria-sort='descending']")
        sort_ms = (time.perf_counter() - t) * 1000
        browser_cpu = _descendants_cpu()
        browser.close()
    cpu1 = os.times()
    server.should_exit = True
    thread.join(timeout=10)
    load = os.getloadavg()
    print(f"browser: time to first plot {first:.0f} ms, every view drawn by {ready:.0f} ms "
          f"(from navigation start), table sort {sort_ms:.0f} ms")
    server_cpu = cpu1.user - cpu0.user + cpu1.system - cpu0.system
    print(f"wall {time.perf_counter() - wall0:.1f} s; CPU of this process (server and the test "
          f"driver) {server_cpu:.1f} s, of the browser processes {browser_cpu:.1f} s; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    storage.close()


if __name__ == "__main__":
    main()
