"""Result validation and the SafeOracle shim: bad results become failed queries, never raises."""
from __future__ import annotations

import math

import numpy as np
import pytest

from oracles.errors import OracleReplyError, OracleTransientError
from oracles.protocol import (JobHandle, QueryRequest, QueryResult, design_from_json,
                              design_to_json)
from oracles.safe import SafeOracle
from oracles.sync import SyncOracle
from oracles.validation import result_from_reply, validate_values


@pytest.mark.parametrize("raw, message", [
    ({"y": math.nan}, "values['y'] is nan"),
    ({"y": math.inf}, "values['y'] is inf"),
    ({"y": "1.0"}, "values['y'] must be a number, got str"),
    ({"y": True}, "values['y'] must be a number, got bool"),
    ({}, "lacks objective(s) ['y']"),
    ({"y": 1.0, "q": 2.0}, "unexpected objective(s) ['q']"),
    ([1.0], "must be an object mapping objective names"),
])
def test_validate_values_names_the_problem(raw, message):
    with pytest.raises(OracleReplyError) as info:
        validate_values(raw, ("y",))
    assert message in str(info.value)


@pytest.mark.parametrize("reply, reason", [
    ({"status": "succeeded", "values": {"y": float("nan")}}, "values['y'] is nan"),
    ({"status": "succeeded", "values": None}, "must be an object"),
    ({"status": "succeeded", "values": {"y": 1.0}, "noise": {"y": -1.0}}, "variance must be >= 0"),
    ({"status": "done"}, "status 'done' is not one of"),
    ("oops", "expected a JSON object"),
    ({"status": "failed"}, "failed without a reason"),
    # json.loads gives a Python int for a long integer literal; float() of it overflows
    ({"status": "succeeded", "values": {"y": 10 ** 400}}, "values['y'] is an integer too large"),
    ({"status": "succeeded", "values": {"y": 1.0}, "noise": {"y": 10 ** 400}},
     "noise['y'] is an integer too large"),
])
def test_bad_replies_become_failed_with_reason(reply, reason):
    result = result_from_reply("k", reply, ("y",))
    assert result.status == "failed" and reason in result.error


def test_good_reply_is_kept():
    result = result_from_reply("k", {"status": "succeeded", "values": {"y": 2}, "noise": {"y": 0.1},
                                     "metadata": {"run": 7}}, ("y",))
    assert result == QueryResult(key="k", status="succeeded", values={"y": 2.0},
                                 noise={"y": 0.1}, metadata={"run": 7})


def test_design_json_round_trip_keeps_shape():
    image = np.arange(64, dtype=np.float64).reshape(8, 8) / 7.0
    assert np.array_equal(design_from_json(design_to_json(image)), image)
    with pytest.raises(ValueError, match="one shape"):
        design_from_json([[1.0], [1.0, 2.0]])


class _Exploding:
    """An oracle whose every call raises, the way a buggy user oracle would."""

    name, objectives = "exploding", ("y",)

    def __init__(self, exc):
        self.exc = exc

    def submit(self, requests):
        raise self.exc

    def poll(self, handles):
        raise self.exc

    def cancel(self, handles):
        raise self.exc

    def close(self):
        raise self.exc


def test_safe_oracle_turns_permanent_errors_into_failed_queries():
    oracle = SafeOracle(_Exploding(RuntimeError("disk full")))
    handles = oracle.submit([QueryRequest("a", np.zeros(2))])
    [result] = oracle.poll(handles)
    assert result.status == "failed" and "RuntimeError: disk full" in result.error
    [result] = oracle.poll([JobHandle("b", "job-b")])
    assert result.status == "failed" and "poll failed: RuntimeError: disk full" in result.error
    oracle.cancel([JobHandle("b", "job-b")])
    oracle.close()


def test_safe_oracle_keeps_jobs_pending_on_transient_errors_and_resubmits_unsubmitted():
    oracle = SafeOracle(_Exploding(OracleTransientError("lab unreachable")))
    [handle] = oracle.submit([QueryRequest("a", np.zeros(2))])
    [result] = oracle.poll([handle])
    assert result.status == "unknown" and "lab unreachable" in result.error  # resubmit, same key
    [result] = oracle.poll([JobHandle("b", "job-b")])
    assert result.status == "pending" and "lab unreachable" in result.error  # never abandoned


def test_safe_oracle_fails_results_that_break_the_contract():
    class Liar:
        name, objectives = "liar", ("y",)

        def submit(self, requests):
            return [JobHandle("someone-else", "1")]

        def poll(self, handles):
            return [QueryResult(key=h.key, status="succeeded", values={"y": math.inf})
                    for h in handles]

        def cancel(self, handles):
            pass

        def close(self):
            pass

    oracle = SafeOracle(Liar())
    [handle] = oracle.submit([QueryRequest("a", np.zeros(1))])
    assert handle.key == "a" and oracle.poll([handle])[0].status == "unknown"
    [result] = oracle.poll([JobHandle("a", "1")])
    assert result.status == "failed" and "values['y'] is inf" in result.error


def test_sync_oracle_is_idempotent_and_reports_exceptions():
    calls = []

    def f(x):
        calls.append(x)
        if x[0] < 0:
            raise ValueError("negative input")
        return {"y": float(x.sum()), "z": np.float32(1.5)}

    oracle = SafeOracle(SyncOracle(f, objectives=("y", "z")))
    reqs = [QueryRequest("a", np.array([1.0, 2.0])), QueryRequest("b", np.array([-1.0, 0.0]))]
    handles = oracle.submit(reqs)
    oracle.submit(reqs)  # a resubmission with the same keys: no second call
    assert len(calls) == 2
    ok, bad = oracle.poll(handles)
    assert ok.values == {"y": 3.0, "z": 1.5}
    assert bad.status == "failed" and "ValueError: negative input" in bad.error
    assert oracle.poll([JobHandle("never", None)])[0].status == "unknown"


def test_sync_oracle_single_objective_scalar_and_wrong_type():
    oracle = SyncOracle(lambda x: "high", objectives=("y", "z"))
    [result] = oracle.poll(oracle.submit([QueryRequest("a", np.zeros(1))]))
    assert result.status == "failed" and "must return a mapping" in result.error
    oracle = SyncOracle(lambda x: np.float64(0.5), objectives=("y",))
    [result] = oracle.poll(oracle.submit([QueryRequest("a", np.zeros(1))]))
    assert result.values == {"y": 0.5}


def test_metadata_that_json_cannot_store_is_caught():
    class Sloppy:
        name, objectives = "sloppy", ("y",)

        def submit(self, requests):
            return [JobHandle(r.key, "1", metadata={"started": {1, 2}}) for r in requests]

        def poll(self, handles):
            return [QueryResult(key=h.key, status="succeeded", values={"y": 1.0},
                                metadata={"raw": np.zeros(2)}) for h in handles]

        def cancel(self, handles):
            pass

        def close(self):
            pass

    oracle = SafeOracle(Sloppy())
    [handle] = oracle.submit([QueryRequest("a", np.zeros(1))])
    assert handle.job_id is None and "not JSON" in oracle.poll([handle])[0].error
    [result] = oracle.poll([JobHandle("a", "1")])
    assert result.values == {"y": 1.0} and "not JSON-serializable" in result.metadata["dropped_metadata"]


def test_sync_oracle_evaluates_a_key_once_when_submitted_from_two_threads_at_once():
    import threading
    import time

    calls: list[int] = []
    start = threading.Barrier(2)

    def slow(x):
        calls.append(1)
        time.sleep(0.2)  # widens the window between "key unknown" and "result stored"
        return 1.0

    oracle = SyncOracle(slow, objectives=("y",))

    def submit() -> None:
        start.wait()
        oracle.submit([QueryRequest("k", np.zeros(1))])

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and oracle.poll([JobHandle("k", "k")])[0].values == {"y": 1.0}
