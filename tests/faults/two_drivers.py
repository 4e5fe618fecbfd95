"""Two ``tiltloop run`` processes started together on one campaign, the lab simulator behind the
counting proxy: shared by ``tests/faults/test_two_drivers.py`` and ``bench/chaos.py``.

    >>> out = run_two_drivers(workdir, db_url, prior, ray_address)   # doctest: +SKIP
    >>> sorted(out.codes), out.extra_posts
    ([0, 2], 0)
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from campaign_configs import campaign_config
from campaign_oracles import Bowl
from faults.http_proxy import FaultProxy
from faults.kill_campaign import PROCESS_LIMIT_S, start_driver
from optimizer.campaign.config_io import dump_toml
from oracles.labsim import LabSimulator
from storage import Storage


@dataclass
class TwoDrivers:
    """Exit codes and output of both drivers (in start order), their pids, what the lab saw."""

    codes: list[int]
    logs: list[str]
    pids: list[int]
    counts: dict[str, int]
    posts: int
    extra_posts: int
    paid_twice: int
    wall_s: float


def run_two_drivers(workdir: Path, db_url: str, prior: str, ray_address: str, *,
                    total: int = 12, name: str = "twins") -> TwoDrivers:
    """Start two drivers of campaign ``name`` at once and wait for both (bounded)."""
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with LabSimulator(Bowl(seed=0, latency_s=0.2)) as lab, FaultProxy(lab.url) as proxy:
        cfg = campaign_config(name, prior, proxy.url, db_url, ray={"address": ray_address},
                              workers={"count": 1},
                              budget={"q": 4, "total": total, "poll_interval_s": 0.05})
        path = workdir / f"{name}.toml"
        path.write_text(dump_toml(cfg))
        logs = [workdir / f"{name}-a.log", workdir / f"{name}-b.log"]
        procs = [start_driver(["run", str(path)], log) for log in logs]
        codes = [p.wait(timeout=PROCESS_LIMIT_S) for p in procs]
        with Storage.open(db_url) as st:
            counts = dict(st.query_counts(name))
        posts = sum(proxy.posts_by_key.values())
        return TwoDrivers(codes=codes, logs=[log.read_text(errors="replace") for log in logs],
                          pids=[p.pid for p in procs], counts=counts, posts=posts,
                          extra_posts=posts - len(proxy.posts_by_key),
                          paid_twice=proxy.paid_twice()
                          + sum(n - 1 for n in lab.store.evaluations.values() if n > 1),
                          wall_s=time.perf_counter() - start)
