"""SIGTERM: a ``tiltloop serve`` process stops taking work, lets its drivers finish their
current transaction, releases its leases and exits 0; everything it sent to the lab is on record,
and a later replica finishes the campaigns with no design evaluated twice."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from pg_schemas import postgres_schema_url
from campaign_oracles import Bowl
from serve_helpers import (ServeProcess, campaign_states, create_campaigns, small_config,
                           wait_until)

from optimizer.campaign.service import open_storage
from oracles.labsim import LabSimulator


NAMES = ["s1", "s2"]
TOTAL = 6


@pytest.mark.slow
def test_sigterm_releases_leases_exits_0_and_loses_nothing(
        ray_session: str, pg_schema: str, tiny_prior_path: str, tmp_path: Path) -> None:
    url = postgres_schema_url(pg_schema)
    env = {"RAY_ADDRESS": ray_session}
    with LabSimulator(Bowl(seed=1, latency_s=1.0)) as lab, open_storage(url, create=True) as st:
        create_campaigns(url, [small_config(n, tiny_prior_path, lab.url, url, total=TOTAL)
                               for n in NAMES])
        procs: list[ServeProcess] = []

        def detail() -> str:
            return "\n".join([campaign_states(st, NAMES), f"lab: {lab.stats()}",
                              *(p.stderr_tail() for p in procs)])

        try:
            procs.append(ServeProcess(url, tmp_path / "first.log", env=env,
                                      args=("--lease-ttl", "30", "--tick", "0.3")))
            first = procs[0]
            wait_until(lambda: all((le := st.campaign_lease(n)) and le.owner == first.owner
                                   for n in NAMES), 60, "the replica to lease both campaigns",
                       detail)
            wait_until(lambda: any(st.query_counts(n)["dispatched"] + st.query_counts(n)["running"]
                                   for n in NAMES), 90, "queries in flight", detail, 0.1)
            began = time.monotonic()
            first.signal(signal.SIGTERM)
            try:
                first.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"serve did not exit within 60 s of SIGTERM\n{detail()}", pytrace=False)
            stopped_s = time.monotonic() - began
            assert first.process.returncode == 0, detail()
            # the leases were released, not left to expire (a 30 s time-out would still run)
            assert [st.campaign_lease(n) for n in NAMES] == [None, None], detail()
            assert stopped_s < 60
            # nothing it dispatched is lost: every job the lab has is a stored query with its
            # job id, and no campaign was paused or failed by the shutdown
            jobs = {job["key"]: job["id"] for job in lab.store.jobs.values()}
            assert jobs, "the replica sent nothing before SIGTERM"
            stored = {q.key: q for n in NAMES for q in st.list_queries(n)}
            for key, job_id in jobs.items():
                assert key in stored and stored[key].job_id == job_id, (key, stored.get(key))
                assert stored[key].status in ("dispatched", "running", "succeeded"), stored[key]
            assert {st.load_campaign(n).status for n in NAMES} == {"active"}
            log = first.log_path.read_text()
            assert "SIGTERM received; stopping" in log and "Traceback" not in log, log[-3000:]

            # a second replica takes the campaigns (no lease to wait out) and finishes them
            procs.append(ServeProcess(url, tmp_path / "second.log", env=env,
                                      args=("--tick", "0.3")))
            wait_until(lambda: all(st.load_campaign(n).status == "completed" for n in NAMES), 150,
                       "the second replica to complete both campaigns", detail, 0.5)
            procs[1].close(timeout_s=60)
            assert procs[1].process.returncode == 0, detail()
        finally:
            for p in procs:
                p.kill()
                p.close(timeout_s=5)
        for name in NAMES:
            counts = st.query_counts(name)
            assert counts["succeeded"] == TOTAL and sum(counts.values()) == TOTAL, (name, counts)
        evaluations = lab.stats()["evaluations"]
        assert max(evaluations.values()) == 1
        assert set(evaluations) == {q.key for n in NAMES
                                    for q in st.list_queries(n, statuses=("succeeded",))}


# ---- start-up errors: one clear line, exit 2, before Ray starts -----------------------------
def test_serve_refuses_a_database_without_schema(pg_schema: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from optimizer.cli import main

    assert main(["serve", "--url", postgres_schema_url(pg_schema), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "has no tiltloop schema" in err and "tiltloop db upgrade" in err
    assert "does not create or migrate the schema itself" in err
    assert main(["serve", "--url", f"sqlite:///{tmp_path / 'missing.db'}"]) == 2
    assert "no database at" in capsys.readouterr().err


def test_serve_refuses_a_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from optimizer.cli import main
    from optimizer.service.serve import is_loopback

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create_campaigns(url, [])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--url", url, "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
