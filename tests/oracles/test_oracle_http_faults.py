"""HTTP oracle against the lab simulator over real loopback HTTP, one injected fault at a time.

Each query ends succeeded (after retries) or failed with its reason, and the simulator's
evaluation count per idempotency key never exceeds 1.
"""
from __future__ import annotations

import http.server
import json
import threading

import pytest

from oracle_helpers import poll_until_done, requests_for
from oracles.http import HttpOracle, RetryPolicy
from oracles.labsim import FaultPlan, LabSimulator
from oracles.protocol import JobHandle
from oracles.safe import SafeOracle
from oracles.simulated import BoTorchFunctionOracle

FAST = RetryPolicy(max_attempts=6, backoff_base_s=0.0)


def _lab(**faults) -> LabSimulator:
    return LabSimulator(BoTorchFunctionOracle("branin", latency_s=0.05),
                        faults=FaultPlan(**faults)).start()


def _client(lab: LabSimulator, sleeps: list | None = None, **kw) -> HttpOracle:
    kw.setdefault("retry", FAST)
    kw.setdefault("timeout_s", 0.5)
    return HttpOracle(lab.url, objectives=("y",), sleep=(sleeps.append if sleeps is not None
                                                        else lambda s: None), **kw)


def _assert_at_most_once(lab: LabSimulator, keys: list[str]) -> None:
    stats = lab.stats()
    assert stats["jobs"] == len(keys)
    assert all(stats["evaluations"].get(k, 0) <= 1 for k in keys), stats["evaluations"]


@pytest.mark.parametrize("fault", ["500", "429", "timeout", "drop", "malformed"])
def test_each_request_fault_is_retried_to_success_without_duplicates(fault):
    # the first 3 requests (submits and polls alike) meet the fault; 500/timeout/drop/malformed
    # strike AFTER the job was created, so the retried POST must find the existing job
    keys = ["q0", "q1", "q2"]
    with _lab(script=[fault] * 3, delay_s=1.5) as lab:
        client = _client(lab)
        handles = client.submit(requests_for(keys))
        assert all(h.job_id for h in handles)
        results = poll_until_done(client, handles)
        client.close()
        assert [r.status for r in results] == ["succeeded"] * 3, results
        _assert_at_most_once(lab, keys)
        assert lab.stats()["evaluations"] == {k: 1 for k in keys}
        assert lab.stats()["faults"] == {fault: 3}


def test_nan_results_fail_with_reason():
    with _lab(rates={"nan": 1.0}) as lab:
        client = _client(lab)
        [result] = poll_until_done(client, client.submit(requests_for(["q0"])))
        assert result.status == "failed" and "values['y'] is nan" in result.error
        assert lab.stats()["evaluations"] == {"q0": 1}


def test_mixed_random_faults_never_duplicate_or_lose_a_query():
    keys = [f"q{i}" for i in range(24)]
    rates = {"500": 0.1, "429": 0.1, "drop": 0.1, "malformed": 0.1, "timeout": 0.03, "nan": 0.1}
    with _lab(rates=rates, seed=7, delay_s=1.0) as lab:
        client = _client(lab, retry=RetryPolicy(max_attempts=10, backoff_base_s=0.0),
                         max_concurrency=8)
        oracle = SafeOracle(client)
        handles = oracle.submit(requests_for(keys))
        results = poll_until_done(oracle, handles, timeout_s=60)
        oracle.close()
        _assert_at_most_once(lab, keys)
        for r in results:
            assert r.status == "succeeded" or "nan" in r.error, r
        assert sum(lab.stats()["faults"].values()) > 5


def test_retry_after_is_honoured_and_backoff_grows():
    sleeps: list[float] = []
    with _lab(script=["429", "429"], retry_after_s=0.75) as lab:
        client = _client(lab, sleeps, retry=RetryPolicy(backoff_base_s=0.01, max_attempts=4))
        [handle] = client.submit(requests_for(["q0"]))
        assert handle.job_id and len(sleeps) == 2
        assert all(s >= 0.75 for s in sleeps)
    sleeps.clear()
    with _lab(script=["500", "500", "500"]) as lab:
        client = _client(lab, sleeps, retry=RetryPolicy(backoff_base_s=0.1, max_attempts=4,
                                                        backoff_max_s=0.3), seed=0)
        client.submit(requests_for(["q0"]))
        # delay_n = min(0.3, 0.1 * 2^(n-1)) * U(0.5, 1)
        assert len(sleeps) == 3
        assert all(lo <= s <= hi for s, (lo, hi) in zip(sleeps, [(0.05, 0.1), (0.1, 0.2),
                                                                  (0.15, 0.3)]))


def test_4xx_is_not_retried_and_fails_with_the_labs_reason():
    sleeps: list[float] = []
    with _lab() as lab:
        client = SafeOracle(_client(lab, sleeps))
        reqs = requests_for(["bad"], dim=3)  # branin takes 2 numbers: the lab answers 422
        [handle] = client.submit(reqs)
        [result] = client.poll([handle])
        assert result.status == "failed"
        assert "HTTP 422" in result.error and "must have shape (2,)" in result.error
        assert sleeps == [] and lab.stats()["requests"] == 1 and lab.stats()["jobs"] == 0
        # the same key with another design is a conflict, not a second job
        [ok] = client.submit(requests_for(["k"]))
        [clash] = client.submit(requests_for(["k"], seed=99))
        [result] = client.poll([clash])
        assert ok.job_id and "HTTP 409" in result.error and lab.stats()["jobs"] == 1


def test_unknown_job_is_unknown_and_resubmission_reuses_the_key():
    with _lab() as lab:
        client = _client(lab)
        [result] = client.poll([JobHandle("q0", "doesnotexist")])
        assert result.status == "unknown" and "404" in result.error
        first = client.submit(requests_for(["q0"]))
        again = client.submit(requests_for(["q0"]))
        assert first[0].job_id == again[0].job_id
        poll_until_done(client, again)
        assert lab.stats()["evaluations"] == {"q0": 1}


def test_exhausted_retries_leave_submits_resubmittable_and_polls_pending():
    with _lab(rates={"500": 1.0}) as lab:
        client = SafeOracle(_client(lab, retry=RetryPolicy(max_attempts=3, backoff_base_s=0)))
        [handle] = client.submit(requests_for(["q0"]))
        [result] = client.poll([handle])
        assert result.status == "unknown" and "failed 3 time(s)" in result.error
        assert "HTTP 500" in result.error
        [result] = client.poll([JobHandle("q0", lab.store.by_key["q0"])])
        assert result.status == "pending" and "HTTP 500" in result.error  # not abandoned
        assert lab.stats()["evaluations"].get("q0", 0) <= 1


def test_cancel_over_http():
    with LabSimulator(BoTorchFunctionOracle("branin", latency_s=60)) as lab:
        client = _client(lab)
        handles = client.submit(requests_for(["a", "b"]))
        client.cancel(handles[:1])
        assert [r.status for r in client.poll(handles)] == ["cancelled", "running"]
        assert lab.stats()["evaluations"] == {}


def test_simulator_state_survives_a_restart(tmp_path):
    state = tmp_path / "lab.json"
    with LabSimulator(BoTorchFunctionOracle("branin", latency_s=0.0), state_path=state) as lab:
        client = _client(lab)
        handles = client.submit(requests_for(["a", "b"]))
        before = poll_until_done(client, handles)
    with LabSimulator(BoTorchFunctionOracle("branin"), state_path=state) as lab:
        client = _client(lab)
        assert client.poll(handles) == before
        assert [h.job_id for h in client.submit(requests_for(["a", "b"]))] == \
            [h.job_id for h in handles]
        assert lab.stats()["evaluations"] == {"a": 1, "b": 1}


class _OneBadReply(http.server.BaseHTTPRequestHandler):
    """Job 'good' is fine; everything about 'deep' comes back as JSON nested too deep to parse."""

    protocol_version = "HTTP/1.1"
    DEEP = b"[" * 200_000 + b"]" * 200_000

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = self.headers.get("Idempotency-Key")
        self._send(self.DEEP if key == "deep" else json.dumps({"id": key}).encode())

    def do_GET(self) -> None:  # noqa: N802
        if self.path.endswith("/deep"):
            return self._send(self.DEEP)
        self._send(json.dumps({"id": "good", "key": "good", "status": "succeeded",
                               "values": {"y": 1.5}}).encode())

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


def test_one_undigestible_reply_does_not_sink_the_rest_of_the_batch():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OneBadReply)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        oracle = SafeOracle(HttpOracle(f"http://127.0.0.1:{server.server_port}", objectives=("y",),
                                       retry=FAST, sleep=lambda s: None))
        good, deep = oracle.submit(requests_for(["good", "deep"]))
        assert good.job_id == "good"  # a job at the lab: its handle must survive
        assert deep.job_id is None and oracle.poll([deep])[0].status == "unknown"  # same key later
        ok, bad = oracle.poll([good, JobHandle("deep", "deep")])
        oracle.close()
    finally:
        server.shutdown()
        server.server_close()
    assert ok.status == "succeeded" and ok.values == {"y": 1.5}
    assert bad.status == "failed" and "RecursionError" in bad.error
