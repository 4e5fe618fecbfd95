"""Child processes for the concurrency and crash tests (run as scripts, never imported by pytest).

    python storage_workers.py claim URL CAMPAIGN OWNER READY_DIR OUT_JSON
    python storage_workers.py crash URL CAMPAIGN MARKER_FILE NUM_CANDIDATES
"""
from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).parent))
from storage import Storage  # noqa: E402
from storage_helpers import make_candidates  # noqa: E402


def _barrier(ready_dir: Path, owner: str, parties: int = 2, timeout: float = 60.0) -> None:
    (ready_dir / owner).touch()
    deadline = time.monotonic() + timeout
    while len(list(ready_dir.iterdir())) < parties:
        if time.monotonic() > deadline:
            raise SystemExit(f"barrier timed out for {owner}")
        time.sleep(0.01)


def claim(url: str, campaign: str, owner: str, ready_dir: str, out: str) -> None:
    """Phase 1: claim + dispatch under leases. Phase 2: race the other process to complete all."""
    storage = Storage.open(url, actor=owner)
    _barrier(Path(ready_dir), owner)
    dispatched: list[str] = []
    claimed: list[str] = []
    while batch := storage.claim_queries(campaign, owner=owner, limit=3, lease_seconds=120):
        claimed += [q.key for q in batch]
        for q in batch:
            if storage.transition_query(q.key, expected="pending", new="dispatched",
                                        job_id=f"{owner}/{q.key}", owner=owner):
                dispatched.append(q.key)
    completed: list[str] = []
    keys = [q.key for q in storage.list_queries(campaign)]
    random.Random(owner).shuffle(keys)
    for key in keys:
        if storage.transition_query(key, expected="dispatched", new="succeeded",
                                    values={"by": float(owner == "b")}):
            completed.append(key)
    storage.close()
    Path(out).write_text(json.dumps({"claimed": claimed, "dispatched": dispatched,
                                      "completed": completed}))


def crash(url: str, campaign: str, marker: str, num: int) -> None:
    """Write a round and stop dead (the parent SIGKILLs us) just before its COMMIT."""
    storage = Storage.open(url)

    @event.listens_for(storage.engine, "commit")
    def _hang(conn) -> None:  # type: ignore[no-untyped-def]
        # Every row of the round is sent, nothing is committed: the parent kills us now.
        Path(marker).write_text("in transaction")
        time.sleep(120)

    storage.record_round(campaign, 0, alpha=0.1, candidates=make_candidates(num),
                         selected=list(range(0, num, 2)), oracle_name="lab")
    raise SystemExit("commit went through: the parent did not kill this process")


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "claim":
        claim(*rest)
    elif mode == "crash":
        crash(rest[0], rest[1], rest[2], int(rest[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
