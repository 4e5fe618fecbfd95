"""Two drivers started together on one campaign (two ``tiltloop run`` processes, real Postgres,
the lab simulator behind the counting proxy): one drives the campaign to its end, the other
exits 2 naming the lease holder, and the lab receives no extra POST (one per query)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from faults.two_drivers import run_two_drivers
from pg_schemas import postgres_schema_url

pytestmark = pytest.mark.slow  # two driver processes and a campaign: ~30 s on 2 cores


def test_two_drivers_started_together_one_runs_the_other_exits_2(
        ray_session: str, pg_schema: str, tiny_prior_path: str, tmp_path: Path) -> None:
    out = run_two_drivers(tmp_path, postgres_schema_url(pg_schema), tiny_prior_path, ray_session)
    assert sorted(out.codes) == [0, 2], (out.codes, out.logs)
    assert not any("Traceback" in log for log in out.logs), out.logs
    refused = out.logs[out.codes.index(2)]
    holder = re.search(r"campaign 'twins' is being driven by (\S+:(\d+):\w+) until", refused)
    assert holder, refused
    assert int(holder.group(2)) == out.pids[out.codes.index(0)]  # names the other driver
    assert out.counts["succeeded"] == 12 and sum(out.counts.values()) == 12, out.counts
    assert out.posts == 12 and out.extra_posts == 0  # no POST from the refused driver
    assert out.paid_twice == 0
