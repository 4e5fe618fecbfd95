"""One campaign driven by ``tiltloop run`` / ``tiltloop resume`` subprocesses that are SIGKILLed
at seeded random moments, with the lab simulator behind the fault-injecting proxy: the scenario
shared by ``tests/faults/test_kill_campaign.py`` and ``bench/chaos.py``.

Each driver process is killed either a random time after it starts (start-up, SMC, the first
dispatch) or a random time after the lab first hears from it (mid-dispatch, mid-poll). After the
last kill a ``resume`` runs the campaign to its end. Then the lab's own books are compared with
the database:

* lost: a job the lab evaluated whose result is not stored as that query's result;
* paid twice: an evaluation beyond the first of a key (the lab's count), plus a design the lab
  accepted as a new job under two keys (the proxy's count);
* tracebacks: ``Traceback`` lines in the drivers' output.

    >>> report = run_kill_campaign(workdir, db_url, prior, ray_address, kills=10)  # doctest: +SKIP
    >>> report.lost, report.paid_twice
    (0, 0)
"""
from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign_configs import campaign_config
from campaign_oracles import Bowl
from faults.http_proxy import FaultProxy
from optimizer.campaign.config_io import dump_toml
from oracles.labsim import LabSimulator
from storage import Storage, StorageError

ROOT = Path(__file__).resolve().parents[2]
#: proxy faults on every job request while the campaign runs
DEFAULT_RATES = {"503": 0.1, "drop": 0.1, "delay": 0.05}
PROCESS_LIMIT_S = 300.0  # no driver process may run longer than this (a hang fails the scenario)


@dataclass
class KillReport:
    """What one kill scenario did and found."""

    kills: int
    total: int
    exits: list[int]
    injected: dict[str, int]
    lost: int
    paid_twice: int
    tracebacks: int
    status: str
    counts: dict[str, int]
    evaluations: int
    wall_s: float
    cpu_s: float
    log: Path
    notes: list[str] = field(default_factory=list)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def start_driver(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """`tiltloop ARGS` as a subprocess of this checkout, its output appended to `log`."""
    out = open(log, "ab")
    out.write(f"--- tiltloop {' '.join(args)}\n".encode())
    out.flush()
    try:
        return subprocess.Popen([sys.executable, "-m", "optimizer.cli", *args], cwd=ROOT,
                                env=_env(), stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()  # the child holds its own copy


def _wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        raise AssertionError(f"driver {proc.args} still ran after {timeout_s} s: a hang") from None


def _kill_at_random(proc: subprocess.Popen[bytes], proxy: FaultProxy, rng: random.Random) -> int | None:
    """SIGKILL ``proc`` at a random moment; None when it was killed, else its exit code."""
    deadline = time.monotonic() + PROCESS_LIMIT_S
    if rng.random() < 0.3:  # anywhere in start-up / SMC / the first dispatch
        moment = time.monotonic() + rng.uniform(0.5, 4.0)
    else:  # once the lab hears from this driver: mid-dispatch, mid-poll
        seen = proxy.requests
        while proxy.requests == seen and proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("a driver never reached the lab")
            time.sleep(0.01)
        moment = time.monotonic() + rng.uniform(0.0, 1.0)
    while time.monotonic() < moment:
        if proc.poll() is not None:
            return proc.returncode
        time.sleep(0.01)
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return None


def run_kill_campaign(workdir: Path, db_url: str, prior: str, ray_address: str, *,
                      kills: int = 10, seed: int = 0, total: int = 40,
                      rates: Mapping[str, float] | None = None, latency_s: float = 0.3,
                      name: str = "chaos-kills") -> KillReport:
    """Run the scenario (see the module docstring) and return its report."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "drivers.log"
    rng = random.Random(seed)
    wall0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    lab = LabSimulator(Bowl(seed=seed, latency_s=latency_s)).start()
    proxy = FaultProxy(lab.url, rates=rates if rates is not None else DEFAULT_RATES, seed=seed,
                       delay_s=0.3).start()
    try:
        cfg = campaign_config(
            name, prior, proxy.url, db_url, ray={"address": ray_address},
            oracle={"options": {"base_url": proxy.url, "timeout_s": 2.0,
                                "retry": {"max_attempts": 8, "backoff_base_s": 0.01,
                                          "backoff_max_s": 0.1}}},
            workers={"count": 1, "particles_per_worker": 16},
            budget={"q": 4, "max_in_flight": 8, "total": total, "poll_interval_s": 0.05,
                    # a key may be resubmitted once per restart: the limit must outlast the kills
                    "max_submit_attempts": 4 * kills, "resubmit_backoff_s": 0.0,
                    "resubmit_backoff_max_s": 0.0})
        path = workdir / "campaign.toml"
        path.write_text(dump_toml(cfg))
        exits: list[int] = []
        killed = 0
        while killed < kills:
            # `run` until the campaign row exists (a driver killed during its start-up leaves
            # nothing to resume), then `resume`, as an operator would
            args = (["resume", name, "--url", db_url] if _exists(db_url, name)
                    else ["run", str(path)])
            code = _kill_at_random(start_driver(args, log), proxy, rng)
            if code is not None:
                exits.append(code)
                break  # ended before its kill: done too early (0) or failed (the caller sees it)
            killed += 1
        final = start_driver(["resume", name, "--url", db_url] if _exists(db_url, name)
                             else ["run", str(path)], log)
        exits.append(_wait_exit(final, PROCESS_LIMIT_S))
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        return _audit(name, db_url, lab, proxy, killed, total, exits, log, time.perf_counter() - wall0,
                      (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime))
    finally:
        proxy.close()
        lab.close()


def _exists(db_url: str, name: str) -> bool:
    """Whether campaign ``name`` has its row (False also while the schema does not exist)."""
    try:
        with Storage.open(db_url) as st:
            st.load_campaign(name)
        return True
    except StorageError:
        return False


def _audit(name: str, db_url: str, lab: LabSimulator, proxy: FaultProxy, kills: int, total: int,
           exits: list[int], log: Path, wall_s: float, cpu_s: float) -> KillReport:
    with Storage.open(db_url) as st:
        stored = {q.key: q for q in st.list_queries(name)}
        counts = dict(st.query_counts(name))
        status = st.load_campaign(name).status
    notes: list[str] = []
    lost = 0
    with lab.store._lock:  # a consistent copy of the lab's books
        jobs = [dict(j) for j in lab.store.jobs.values()]
        evaluations = dict(lab.store.evaluations)
    for job in jobs:
        if job["status"] != "succeeded":
            continue
        q = stored.get(job["key"])
        if q is None or q.status != "succeeded" or q.values != job["values"]:
            lost += 1
            notes.append(f"lab result of {job['key']} not stored: "
                         f"{None if q is None else (q.status, q.values, q.error)}")
    paid_twice = sum(n - 1 for n in evaluations.values() if n > 1) + proxy.paid_twice()
    text = log.read_text(errors="replace")
    return KillReport(kills=kills, total=total, exits=exits, injected=dict(proxy.injected), lost=lost,
                      paid_twice=paid_twice, tracebacks=text.count("Traceback"), status=status,
                      counts=counts, evaluations=sum(evaluations.values()), wall_s=wall_s,
                      cpu_s=cpu_s, log=log, notes=notes)


def summary(report: KillReport) -> dict[str, Any]:
    """The report as a table row."""
    return {"kills": report.kills, "faults": sum(report.injected.values()),
            "by kind": report.injected, "lost": report.lost, "paid twice": report.paid_twice,
            "tracebacks": report.tracebacks, "status": report.status}
