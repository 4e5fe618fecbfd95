"""≥ 10 SIGKILLs at seeded random moments across one campaign (``tiltloop run``, then ``tiltloop
resume`` after each kill) on real Postgres, with the lab simulator behind the fault-injecting
proxy (503 before forwarding, connections dropped after the lab accepted, delays): no result
lost, no design paid twice (counted at the lab), and the campaign completes."""
from __future__ import annotations

from pathlib import Path

import pytest

from faults.kill_campaign import run_kill_campaign
from pg_schemas import postgres_schema_url

pytestmark = pytest.mark.slow  # a dozen driver processes: a couple of minutes on 2 cores


def test_ten_sigkills_with_proxy_faults_lose_nothing_and_pay_nothing_twice(
        ray_session: str, pg_schema: str, tiny_prior_path: str, tmp_path: Path) -> None:
    report = run_kill_campaign(tmp_path, postgres_schema_url(pg_schema), tiny_prior_path,
                               ray_session, kills=10, seed=18)
    tail = report.log.read_text(errors="replace")[-4000:]
    assert report.kills == 10, (report.exits, tail)
    assert report.status == "completed" and report.exits[-1] == 0, (report.exits, tail)
    assert report.counts["succeeded"] == report.total == sum(report.counts.values()), report.counts
    assert report.lost == 0, report.notes
    assert report.paid_twice == 0
    assert report.evaluations == report.total  # every stored result was paid exactly once
    assert report.tracebacks == 0, tail
    assert report.injected.get("503") and report.injected.get("drop"), report.injected
    log = report.log.read_text(errors="replace")
    assert "already at the oracle, re-polling them" in log  # some kills struck with jobs in flight
