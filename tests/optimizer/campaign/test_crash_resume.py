"""Crash safety: the driver SIGKILLs itself at named points, ``resume`` continues each time, and
the lab simulator never evaluates a key twice while every paid query's result is stored.

One campaign is killed five times in a row (during SMC, after the outbox write, after the oracle
accepted jobs whose ids were not yet stored, after ids were stored, while polling), each time by
a fresh ``tiltloop run`` / ``tiltloop resume`` process, then resumed to completion.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from optimizer.campaign.config_io import dump_toml
from optimizer.campaign.resume import resume_campaign
from storage import Storage

from crash_cli import killed_at

pytestmark = pytest.mark.slow  # repeated SIGKILLed campaign processes: minutes on 2 cores



def test_repeated_sigkill_then_resume_is_exactly_once(ray_session: str, lab, tmp_path: Path,
                                                      make_config) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    name = "crashy"
    cfg = make_config(name, "gmm-toy", lab.url, url, ray={"address": ray_session},
                      workers={"count": 1, "chunks_per_worker": 2, "particles_per_worker": 16},
                      budget={"q": 4, "max_in_flight": 8, "total": 16, "poll_interval_s": 0.05})
    path = tmp_path / "campaign.toml"
    path.write_text(dump_toml(cfg))
    log = tmp_path / "driver.log"
    steps = [
        (["run", str(path)], "smc:1"),                  # round 0 SMC running: nothing written yet
        (["resume", name, "--url", url], "outbox:1"),   # round 0 + its 4 queries committed
        (["resume", name, "--url", url], "submitted:1"),  # lab accepted 4 jobs, ids not stored
        (["resume", name, "--url", url], "polling:1"),  # results fetched, not stored
        (["resume", name, "--url", url], "dispatched:1"),  # round 1 jobs' ids stored
    ]
    seen = []
    for args, point in steps:
        killed_at(args, point, log)
        with Storage.open(url) as st:
            seen.append((point, st.query_counts(name)))
        assert max(lab.store.evaluations.values(), default=0) <= 1, (point, dict(lab.store.evaluations))

    assert seen[0][1]["pending"] == 0 and sum(seen[0][1].values()) == 0  # SMC crash wrote no query
    assert seen[1][1]["pending"] == 4  # the outbox survived the crash
    assert seen[2][1]["dispatched"] == 4  # dispatched, job ids unknown to the database

    status = resume_campaign(name, url)
    assert status.status == "completed", status
    with Storage.open(url) as st:
        counts = st.query_counts(name)
        succeeded = {q.key for q in st.list_queries(name, statuses=("succeeded",))}
        rounds = st.list_rounds(name)
    assert counts["succeeded"] == 16 and sum(counts.values()) == 16, (seen, counts)
    assert [r.index for r in rounds] == [0, 1, 2, 3] and all(r.status == "complete" for r in rounds)
    evaluations = dict(lab.store.evaluations)
    assert max(evaluations.values()) == 1  # no design paid twice
    assert set(evaluations) == succeeded  # every paid query's result is stored
