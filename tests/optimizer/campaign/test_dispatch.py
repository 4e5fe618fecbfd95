"""The dispatcher against the lab simulator over HTTP: after a driver crash, a lab that lost its
jobs (restarted without state) answers "unknown"; the queries are resubmitted with the SAME keys,
evaluated once, and a later driver process finds the new job ids again."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from optimizer.campaign.dispatch import Dispatcher
from campaign_oracles import Bowl
from oracles.factory import build_oracle
from oracles.labsim import LabSimulator
from storage import NewCandidate, Storage
from storage.migrate import upgrade


def _dispatcher(st: Storage, url: str) -> Dispatcher:
    oracle = build_oracle("http", {"base_url": url, "objectives": ["y"], "timeout_s": 5.0})
    return Dispatcher(st, "d", oracle, objectives=["y"], limit=2)


def _poll_until(d: Dispatcher, st: Storage, succeeded: int) -> None:
    for _ in range(100):
        d.poll()
        if st.query_counts("d")["succeeded"] >= succeeded:
            return
    raise AssertionError(f"never reached {succeeded} results: {st.query_counts('d')}")


def test_unknown_jobs_are_resubmitted_with_same_key(tmp_path: Path, lab) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    upgrade(url)
    st = Storage.open(url)
    st.create_campaign("d", {"note": "dispatcher test"})
    designs = np.array([[0.0, 0.0], [1.0, -0.5], [2.0, 2.0], [3.0, 0.0]])
    rec = st.record_round("d", 0, alpha=1.0, candidates=[NewCandidate(x) for x in designs],
                          selected=[0, 1, 2], oracle_name="lab")
    port = int(lab.url.rsplit(":", 1)[1])
    d = _dispatcher(st, lab.url)
    assert d.dispatch() == 2  # the in-flight limit holds the third back
    first_ids = {q.key: q.job_id for q in st.list_queries("d", statuses=("dispatched",))}
    assert len(first_ids) == 2 and all(first_ids.values())
    d.close()  # the driver dies ...
    lab.close()  # ... and the lab restarts, forgetting every job (no state file)

    with LabSimulator(Bowl(seed=0), port=port) as lab2:
        lab2.start()
        d2 = _dispatcher(st, lab2.url)
        assert d2.restore() == 2  # handles rebuilt from the stored job ids
        out = d2.poll()
        assert sorted(out.resubmitted) == sorted(first_ids)  # 404 -> unknown -> same key again
        assert d2.dispatch() == 0  # still two at the oracle
        _poll_until(d2, st, 2)
        assert d2.dispatch() == 1
        d2.close()
        d3 = _dispatcher(st, lab2.url)  # another restart: the new job ids live in the event log
        assert d3.restore() == 1
        _poll_until(d3, st, 3)
        d3.close()
        counts = st.query_counts("d")
        assert counts["succeeded"] == 3 and sum(counts.values()) == 3
        values = {q.key: q.values["y"] for q in st.list_queries("d")}
        assert np.isclose(values["d:0:1"], 0.0)  # Bowl's optimum at (1, -0.5)
        assert set(lab2.store.evaluations) == set(rec.query_keys)
        assert max(lab2.store.evaluations.values()) == 1
        events = st.list_events("d", kind="query.handle")
        # only the resubmissions' new job ids needed the event log (the column keeps the first)
        assert sorted(e.payload["key"] for e in events) == sorted(first_ids)
        assert all(e.payload["job_id"] != first_ids[e.payload["key"]] for e in events)
    st.close()


class _RecordingStorage(Storage):
    """The real store, remembering which reads the loop made (the costly ones at 10^5 queries:
    a history decode, or every query's design)."""

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.reads: list[tuple[str, dict]] = []

    def list_queries(self, campaign, **kw):  # type: ignore[no-untyped-def]
        self.reads.append(("list_queries", kw))
        return super().list_queries(campaign, **kw)

    def load_history(self, campaign, **kw):  # type: ignore[no-untyped-def]
        self.reads.append(("load_history", kw))
        return super().load_history(campaign, **kw)


def test_loop_reads_stay_flat_in_campaign_size(tmp_path: Path, lab) -> None:
    """Dispatch decodes only the designs it sends; the driver never loads the whole history (its
    cache reads what changed) and then follows each poll's new results; rounds close from the
    in-flight queries alone."""
    from optimizer.campaign.config_io import parse_config
    from optimizer.campaign.driver import CampaignDriver, campaign_status

    url = f"sqlite:///{tmp_path / 'f.db'}"
    upgrade(url)
    st = _RecordingStorage.open(url)
    cfg = parse_config({
        "name": "d", "prior": {"name": "gmm-toy"}, "objectives": [{"name": "y"}],
        "oracle": {"kind": "http", "options": {"base_url": lab.url, "objectives": ["y"]}},
        "workers": {"count": 1, "particles_per_worker": 8},
        "budget": {"q": 2, "max_in_flight": 2, "total": 6, "poll_interval_s": 0.01},
        "storage": {"url": url}}, "test")
    st.create_campaign("d", cfg.to_json_dict(), budget=6)
    rng = np.random.default_rng(0)
    for r in range(3):  # every round already written: the driver only dispatches and polls
        st.record_round("d", r, alpha=1.0, candidates=[NewCandidate(x) for x in rng.normal(size=(3, 2))],
                        selected=[0, 1], oracle_name="lab")
    oracle = build_oracle("http", {"base_url": lab.url, "objectives": ["y"]})
    driver = CampaignDriver(cfg, st, oracle)  # no generator: generating a round would raise
    status = driver.run(timeout_s=60)
    driver.close()
    assert status.status == "completed" and status.results == 6
    expected = campaign_status(st, "d", cfg)  # best from the full history
    assert (status.best, status.best_key) == (expected.best, expected.best_key)
    assert max(lab.store.evaluations.values()) == 1
    driver_reads = st.reads[:-1]  # the last one is ours
    histories = [kw for name, kw in driver_reads if name == "load_history"]
    assert histories == []  # the history cache reads only what changed (history_changes)
    listed = [kw for name, kw in driver_reads if name == "list_queries"]
    assert listed and not any(kw.get("with_design") for kw in listed)
    assert all(kw.get("statuses") and set(kw["statuses"]) <= {"pending", "dispatched", "running"}
               for kw in listed)
    assert all(r.status == "complete" for r in st.list_rounds("d"))
    st.close()
