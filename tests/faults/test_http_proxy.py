"""The fault-injecting proxy itself: what it injects and what it counts, against the real lab
simulator and the real HTTP oracle (the campaign-level tests rely on these counts)."""
from __future__ import annotations

import threading
import time

import httpx
import numpy as np

from campaign_oracles import Bowl
from faults.http_proxy import FaultProxy
from oracles.http import HttpOracle, RetryPolicy
from oracles.labsim import LabSimulator
from oracles.protocol import QueryRequest

FAST = RetryPolicy(max_attempts=3, backoff_base_s=0.0)


def _submit(url: str, key: str = "c:0:0") -> str | None:
    oracle = HttpOracle(url, objectives=("y",), retry=FAST)
    try:
        (handle,) = oracle.submit([QueryRequest(key, np.array([0.25, 0.5]), {})])
        return handle.job_id
    finally:
        oracle.close()


def test_a_connection_dropped_after_the_lab_accepted_is_retried_into_the_same_job() -> None:
    with LabSimulator(Bowl()) as lab, FaultProxy(lab.url, script=["drop"]) as proxy:
        job_id = _submit(proxy.url)
        assert job_id is not None and lab.stats()["jobs"] == 1
        assert proxy.injected == {"drop": 1}
        assert proxy.posts_by_key == {"c:0:0": 2}  # the lab saw the POST twice ...
        assert proxy.created_by_key == {"c:0:0": 1}  # ... and created one job
        assert sum(proxy.posts_by_design.values()) == 2 and len(proxy.posts_by_design) == 1
        assert proxy.paid_twice() == 0


def test_a_503_is_answered_before_the_lab_sees_the_request() -> None:
    with LabSimulator(Bowl()) as lab, FaultProxy(lab.url, script=["503", "503"]) as proxy:
        assert _submit(proxy.url) is not None
        assert proxy.injected == {"503": 2} and proxy.posts_by_key == {"c:0:0": 1}
        assert lab.stats()["requests"] == 1


def test_the_same_design_under_two_keys_counts_as_paid_twice() -> None:
    with LabSimulator(Bowl()) as lab, FaultProxy(lab.url) as proxy:
        _submit(proxy.url, "c:0:0")
        _submit(proxy.url, "c:0:1")
        assert proxy.created_by_design.most_common(1)[0][1] == 2 and proxy.paid_twice() == 1
        assert lab.stats()["jobs"] == 2


def test_health_is_never_faulted_and_close_ends_a_delayed_request() -> None:
    with LabSimulator(Bowl()) as lab:
        proxy = FaultProxy(lab.url, rates={"503": 1.0}).start()
        assert httpx.get(f"{proxy.url}/health", timeout=5).status_code == 200
        proxy.set_faults({"delay": 1.0})
        proxy.delay_s = 60.0
        outcome: list[object] = []
        client = threading.Thread(target=lambda: outcome.append(_try_get(proxy.url)))
        client.start()
        time.sleep(0.2)
        start = time.monotonic()
        proxy.close()
        client.join(timeout=10)
        assert not client.is_alive() and time.monotonic() - start < 10
        assert outcome and outcome[0] != 200  # cut, not forwarded


def _try_get(url: str) -> object:
    try:
        return httpx.get(f"{url}/jobs/x", timeout=30).status_code
    except httpx.TransportError as exc:
        return type(exc).__name__
