"""Real processes: two claimers at once complete each query exactly once; a writer SIGKILLed in
the middle of a round leaves no partial round."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage import Storage
from storage.engine import create_engine
from storage_helpers import setup_round

pytestmark = pytest.mark.slow  # real child processes (and a SIGKILL) per test: 3-10 s each

WORKERS = str(Path(__file__).with_name("storage_workers.py"))


def _run_claimers(url: str, tmp_path: Path) -> list[dict]:
    ready = tmp_path / "ready"
    ready.mkdir()
    procs = [
        subprocess.Popen([sys.executable, WORKERS, "claim", url, "c1", owner, str(ready),
                          str(tmp_path / f"{owner}.json")], stderr=subprocess.PIPE, text=True)
        for owner in ("a", "b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    return [json.loads((tmp_path / f"{o}.json").read_text()) for o in ("a", "b")]


def test_two_processes_complete_each_query_exactly_once(storage: Storage, storage_url: str,
                                                        tmp_path: Path) -> None:
    keys = set(setup_round(storage, num=80, selected=tuple(range(0, 80, 2))))
    assert len(keys) == 40
    a, b = _run_claimers(storage_url, tmp_path)
    # claims themselves are disjoint (the lease check in transition_query would hide an
    # overlapping claim from the "dispatched" lists), and nobody claimed a key twice
    assert set(a["claimed"]).isdisjoint(b["claimed"])  # SKIP LOCKED / BEGIN IMMEDIATE
    assert len(a["claimed"] + b["claimed"]) == len(keys)
    assert set(a["dispatched"]) == set(a["claimed"]) and set(b["dispatched"]) == set(b["claimed"])
    assert set(a["dispatched"]) | set(b["dispatched"]) == keys  # none lost
    assert set(a["completed"]).isdisjoint(b["completed"])  # the conditional UPDATE
    assert set(a["completed"]) | set(b["completed"]) == keys
    final = {q.key: q for q in storage.list_queries("c1")}
    assert {q.status for q in final.values()} == {"succeeded"}
    assert {q.attempts for q in final.values()} == {1}
    for key, q in final.items():
        dispatcher = "a" if key in a["dispatched"] else "b"
        assert q.job_id == f"{dispatcher}/{key}"
        assert q.values == {"by": float(key in b["completed"])}
    wins = [e for e in storage.list_events("c1", kind="query.transition")
            if e.payload["to"] == "succeeded"]
    assert sorted(e.payload["key"] for e in wins) == sorted(keys)


def _counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        counts = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                  for t in ("round", "candidate", "oracle_query")}
    engine.dispose()
    return counts


def test_sigkill_mid_round_leaves_no_partial_round(storage: Storage, storage_url: str,
                                                   tmp_path: Path) -> None:
    storage.create_campaign("c1", {})
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, WORKERS, "crash", storage_url, "c1", str(marker),
                             "400"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the writer never reached its commit"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while True:  # Postgres rolls the dead client's transaction back when it sees the socket close
        try:
            counts = _counts(storage_url)
            break
        except Exception:  # noqa: BLE001 — SQLite may still be recovering the WAL lock
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert counts == {"round": 0, "candidate": 0, "oracle_query": 0}
    assert storage.list_rounds("c1") == []
    # the same round can be written afresh, completely
    keys = setup_round(storage, num=400, selected=tuple(range(0, 400, 2)))
    assert len(keys) == 200 and len(storage.list_candidates("c1", 0)) == 400
