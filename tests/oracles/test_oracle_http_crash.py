"""Crashes: a client SIGKILLed after (or while) submitting, and a simulator SIGKILLed and restarted.
A new client resubmits the same keys; no design is ever evaluated twice."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from oracle_helpers import poll_until_done, requests_for, subprocess_env
from oracles.http import HttpOracle, RetryPolicy
from oracles.labsim import FaultPlan, LabSimulator, LabSimulatorProcess
from oracles.simulated import BoTorchFunctionOracle

CLIENT = Path(__file__).with_name("oracle_crash_client.py")
FAST = RetryPolicy(backoff_base_s=0.0)


def _start_client(url: str, keys: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CLIENT), url, *keys], stdout=subprocess.PIPE,
                            text=True, env=subprocess_env(), cwd=str(CLIENT.parent))


def _wait(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_client_killed_after_submitting_then_new_client_resubmits_same_keys():
    keys = [f"q{i}" for i in range(5)]
    with LabSimulator(BoTorchFunctionOracle("branin", latency_s=0.2)) as lab:
        proc = _start_client(lab.url, keys)
        try:
            assert proc.stdout.readline().strip() == "started"
            job_ids = json.loads(proc.stdout.readline())
        finally:
            proc.kill()  # SIGKILL: the client never saves or cleans anything
            proc.wait()
        assert proc.returncode == -9
        fresh = HttpOracle(lab.url, retry=FAST)
        handles = fresh.submit(requests_for(keys))  # knows nothing of the job ids: same keys
        assert [h.job_id for h in handles] == job_ids
        results = poll_until_done(fresh, handles)
        assert all(r.status == "succeeded" for r in results)
        assert lab.stats()["evaluations"] == {k: 1 for k in keys} and lab.stats()["jobs"] == 5


def test_client_killed_while_its_submit_is_in_flight():
    # every reply is held 30 s: the jobs exist on the lab, the client never learns their ids
    keys = ["a", "b", "c"]
    with LabSimulator(BoTorchFunctionOracle("branin", latency_s=0.0),
                      faults=FaultPlan(script=["timeout"] * 3, delay_s=30.0)) as lab:
        proc = _start_client(lab.url, keys)
        try:
            _wait(lambda: lab.stats()["jobs"] == 3)
        finally:
            proc.kill()
            proc.wait()
        fresh = HttpOracle(lab.url, retry=FAST)
        handles = fresh.submit(requests_for(keys))
        assert lab.stats()["jobs"] == 3  # found, not created again
        results = poll_until_done(fresh, handles)
        assert all(r.status == "succeeded" for r in results)
        assert lab.stats()["evaluations"] == {k: 1 for k in keys}


@pytest.mark.slow
def test_simulator_killed_and_restarted_keeps_its_jobs(tmp_path):
    state = tmp_path / "lab-state.json"
    args = ["--function", "branin", "--latency", "0.0", "--state", str(state)]
    keys = ["a", "b"]
    with LabSimulatorProcess(args, env=subprocess_env()) as lab:
        client = HttpOracle(lab.url, retry=FAST)
        handles = client.submit(requests_for(keys))
        first = poll_until_done(client, handles)
        client.close()
        lab.kill()
    with LabSimulatorProcess(args, env=subprocess_env()) as lab:
        client = HttpOracle(lab.url, retry=FAST)
        assert client.poll(handles) == first  # re-polled by stored job id after the crash
        assert [h.job_id for h in client.submit(requests_for(keys))] == \
            [h.job_id for h in handles]
        stats = httpx.get(f"{lab.url}/stats").json()
        assert stats["evaluations"] == {"a": 1, "b": 1} and stats["jobs"] == 2
        client.close()
