"""Two drivers started together on one campaign (two ``tiltloop run`` processes, real Postgres,
the lab simulator behind the counting proxy): one drives the campaign to its end, the other
exits 2 naming the lease holder, and the lab receives no extra POST (one per query)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from campaign_configs import campaign_config
from campaign_oracles import Bowl
from faults.http_proxy import FaultProxy
from faults.kill_campaign import start_driver
from optimizer.campaign.config_io import dump_toml
from oracles.labsim import LabSimulator
from pg_schemas import postgres_schema_url
from storage import Storage

pytestmark = pytest.mark.slow  # two driver processes and a campaign: ~30 s on 2 cores


def test_two_drivers_started_together_one_runs_the_other_exits_2(
        ray_session: str, pg_schema: str, tiny_prior_path: str, tmp_path: Path) -> None:
    url = postgres_schema_url(pg_schema)
    with LabSimulator(Bowl(seed=0, latency_s=0.2)) as lab, FaultProxy(lab.url) as proxy:
        cfg = campaign_config("twins", tiny_prior_path, proxy.url, url,
                              ray={"address": ray_session}, workers={"count": 1},
                              budget={"q": 4, "total": 12, "poll_interval_s": 0.05})
        path = tmp_path / "twins.toml"
        path.write_text(dump_toml(cfg))
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        procs = [start_driver(["run", str(path)], log) for log in logs]
        codes = sorted((p.wait(timeout=300), log.read_text(errors="replace"))
                       for p, log in zip(procs, logs))
        (ok, ok_log), (refused, refused_log) = codes
        assert (ok, refused) == (0, 2), codes
        assert "Traceback" not in ok_log + refused_log, codes
        holder = re.search(r"campaign 'twins' is being driven by (\S+:\d+:\w+) until", refused_log)
        assert holder, refused_log
        pids = {str(p.pid) for p in procs}
        assert holder.group(1).split(":")[1] in pids  # names the other driver's process
        with Storage.open(url) as st:
            counts = st.query_counts("twins")
        assert counts["succeeded"] == 12 and sum(counts.values()) == 12, counts
        assert sum(proxy.posts_by_key.values()) == 12  # no extra POST from the refused driver
        assert max(proxy.posts_by_key.values()) == 1 and proxy.paid_twice() == 0
        assert max(lab.store.evaluations.values()) == 1
