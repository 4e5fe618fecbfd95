"""Cheap evaluators survive SIGKILL: a driver killed between the cheap oracle's dispatch and the
expensive one's resumes without a duplicate at either lab.

The campaign (expensive lab + cheap lab, both the lab simulator over real HTTP) is killed three
times by fresh ``tiltloop run`` / ``resume`` processes:

1. ``submitted:1`` — the cheap lab accepted round 0's jobs, their ids are not stored, the
   expensive round 0 does not exist yet;
2. ``dispatched:1`` — on resume the cheap round 0 is found (not recorded again), its queries
   resubmitted with their original keys and their ids stored; the expensive round not yet
   recorded;
3. ``outbox:1`` — the expensive round 0 and its outbox committed, nothing sent;

then resumed to completion. Each lab evaluated every key at most once, and exactly the keys
stored as that oracle's results.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oracles.labsim import LabSimulator
from optimizer.campaign.config_io import dump_toml
from optimizer.campaign.fidelity import child_name
from optimizer.campaign.resume import resume_campaign
from storage import Storage
from campaign_configs import campaign_config
from campaign_oracles import Bowl
from crash_cli import killed_at

pytestmark = pytest.mark.slow  # SIGKILLed campaign processes


class ShiftedBowl(Bowl):
    """The Bowl plus a smooth bias: the cheap lab."""

    def score(self, design: np.ndarray) -> dict[str, float]:
        return {"y": super().score(design)["y"] + 0.2 * float(np.cos(design[1]))}


@pytest.fixture()
def labs() -> Iterator[tuple[LabSimulator, LabSimulator]]:
    main, cheap = LabSimulator(Bowl(seed=0)).start(), LabSimulator(ShiftedBowl(seed=1)).start()
    try:
        yield main, cheap
    finally:
        main.close()
        cheap.close()


def test_kill_between_cheap_and_expensive_dispatch_is_exactly_once(
        ray_session: str, labs: tuple[LabSimulator, LabSimulator], tmp_path: Path) -> None:
    lab, cheap_lab = labs
    url = f"sqlite:///{tmp_path / 'mf-crash.db'}"
    name = "mfcrash"
    child = child_name(name, "sim")
    cheap: dict[str, Any] = {"oracles": [{
        "name": "sim", "cost": 0.1, "per_round": 5, "wait_s": 60.0,
        "oracle": {"kind": "http", "base_url": cheap_lab.url, "timeout_s": 10.0}}]}
    cfg = campaign_config(
        name, "gmm-toy", lab.url, url, ray={"address": ray_session},
        workers={"count": 1, "chunks_per_worker": 2, "particles_per_worker": 16},
        budget={"q": 3, "max_in_flight": 3, "total": 9, "poll_interval_s": 0.05}, **cheap)
    path = tmp_path / "campaign.toml"
    path.write_text(dump_toml(cfg))
    log = tmp_path / "driver.log"
    steps = [(["run", str(path)], "submitted:1"),
             (["resume", name, "--url", url], "dispatched:1"),
             (["resume", name, "--url", url], "outbox:1")]
    seen = []
    for args, point in steps:
        killed_at(args, point, log)
        with Storage.open(url) as st:
            seen.append((point, st.query_counts(child), st.query_counts(name)))
        assert max(cheap_lab.store.evaluations.values(), default=0) <= 1, point
        assert max(lab.store.evaluations.values(), default=0) <= 1, point
    # 1: the cheap jobs were accepted, their ids not stored; no expensive round yet
    assert seen[0][1]["dispatched"] == 5 and sum(seen[0][2].values()) == 0, seen
    # 2: resubmitted by key (not recorded again); still no expensive query
    assert sum(seen[1][1].values()) == 5 and sum(seen[1][2].values()) == 0, seen
    # 3: the expensive outbox is committed, nothing sent
    assert seen[2][2]["pending"] == 3, seen

    status = resume_campaign(name, url)
    assert status.status == "completed", (status, log.read_text()[-3000:])
    with Storage.open(url) as st:
        main_ok = {q.key for q in st.list_queries(name, statuses=("succeeded",))}
        cheap_ok = {q.key for q in st.list_queries(child, statuses=("succeeded",))}
        cheap_counts = st.query_counts(child)
        cheap_rounds = [r.index for r in st.list_rounds(child)]
    assert len(main_ok) == 9 and cheap_rounds == [0, 1, 2]
    assert sum(cheap_counts.values()) == cheap_counts["succeeded"] == 15
    assert set(lab.store.evaluations) == main_ok and max(lab.store.evaluations.values()) == 1
    assert set(cheap_lab.store.evaluations) == cheap_ok
    assert max(cheap_lab.store.evaluations.values()) == 1  # no cheap design paid twice
