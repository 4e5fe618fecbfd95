"""A pull campaign (``[oracle] kind = "pull"``) driven end to end: the driver generates rounds and
reads lab reports from the database; lab clients claim and report through storage (the same
calls the service's pull routes make), some crash after claiming. Real Ray, real databases."""
from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest

from optimizer.campaign.pull_dispatch import PullDispatcher
from optimizer.campaign.service import drive, open_storage, start_or_resume
from storage import NewCandidate
from storage.errors import WorkNotHeld


def _bowl(design: np.ndarray) -> float:
    return -float(((np.asarray(design) - np.array([1.0, -0.5])) ** 2).sum())


def _lab(url: str, name: str, client: str, stop: threading.Event, stored: list[str],
         crashes: int, crashed: threading.Event) -> None:
    """Claim 2 items at a time; the first ``crashes`` claims are abandoned (never reported),
    then ``crashed`` is set. A lab with no crashes to make starts only once it is set, so the
    crashing lab surely gets items to abandon."""
    if not crashes and not crashed.wait(timeout=120):
        return
    with open_storage(url, create=False) as st:
        n = 0
        while not stop.is_set():
            items = st.claim_work(name, client, uuid.uuid4().hex, 2, 0.5)
            if not items:
                time.sleep(0.05)
                continue
            n += 1
            if n <= crashes:
                if n == crashes:
                    crashed.set()
                continue  # "crashed": the lease expires and another client gets the items
            for q in items:
                try:
                    if st.report_work(q.key, client, values={"y": _bowl(q.design)}):
                        stored.append(q.key)
                except WorkNotHeld:
                    pass  # reclaimed by another client after our lease expired


@pytest.mark.slow
def test_pull_campaign_completes_with_crashing_labs(ray_session: str, tiny_prior_path: str,
                                                    db_url: str, make_config) -> None:
    cfg = make_config("pulled", tiny_prior_path, "http://127.0.0.1:9", db_url,
                      oracle={"kind": "pull", "lease_s": 0.5},
                      budget={"total": 12, "q": 4, "max_in_flight": 8, "poll_interval_s": 0.05})
    with open_storage(db_url, create=True) as st:
        start_or_resume(cfg, st, source="test")
        stop = threading.Event()
        stored: list[str] = []
        crashed = threading.Event()
        labs = [threading.Thread(target=_lab, args=(db_url, "pulled", f"lab-{i}", stop, stored,
                                                    2 if i == 0 else 0, crashed))
                for i in range(3)]
        for t in labs:
            t.start()
        try:
            status = drive(cfg, st, timeout_s=240)
        finally:
            stop.set()
            for t in labs:
                t.join(timeout=30)
        assert status.status == "completed", status.line()
        done = st.list_queries("pulled", statuses=("succeeded",), with_design=True)
        assert len(done) == 12 and sorted(stored) == sorted(q.key for q in done)  # each once
        for q in done:
            assert q.values == {"y": pytest.approx(_bowl(q.design))}
        best = max(q.values["y"] for q in done if q.values)
        assert status.best == pytest.approx(best)  # the driver saw every lab report
        reclaimed = [e for e in st.list_events("pulled", kind="query.transition")
                     if e.payload.get("reason") == "pull lease expired"]
        assert reclaimed, "the crashing lab's items were never reclaimed"


def test_pull_dispatcher_reports_each_final_transition_once(db_url: str, make_config,
                                                            tiny_prior_path: str) -> None:
    cfg = make_config("pd", tiny_prior_path, "http://127.0.0.1:9", db_url,
                      oracle={"kind": "pull"})
    with open_storage(db_url, create=True) as st:
        start_or_resume(cfg, st, source="test")
        st.record_round("pd", 0, alpha=1.0, candidates=[NewCandidate(np.zeros(2))] * 3,
                        selected=[0, 1, 2], oracle_name="pull")
        d = PullDispatcher(st, "pd", objectives=("y",))
        assert d.restore() == 3 and d.dispatch() == 0
        keys = [q.key for q in st.claim_work("pd", "lab", "r1", 3, 60.0)]
        st.report_work(keys[0], "lab", values={"y": 1.0})
        st.report_work(keys[1], "lab", error="sample spilled")
        first = d.poll()
        assert first.succeeded == (keys[0],) and first.failed == (keys[1],)
        assert d.poll().finished == 0  # the look-back window re-reads; nothing is reported twice
        assert d.cancel_in_flight() == [keys[2]]
        assert d.poll().cancelled == (keys[2],)
        fresh = PullDispatcher(st, "pd", objectives=("y",))
        fresh.restore()
        assert fresh.poll().finished == 0  # a restarted driver does not re-observe old results
