"""Builders of the dashboard tests: campaigns with stored rounds, queries and results, written
through the storage API as a driver would (no Ray)."""
from __future__ import annotations

from typing import Any

import numpy as np

from optimizer.campaign.config_io import parse_config
from storage import NewCandidate, Storage

#: A password inside the stored config's storage URL, and a value of a field named like a token:
#: neither may ever reach a page.
SECRET_URL = "postgresql+psycopg://lab:hunter2-not-shown@db.example/tl"
SECRET_TOKEN_FIELD = "LAB_TOKEN_SECRET_NAME"


def create_campaign(storage: Storage, name: str, config: dict[str, Any]) -> None:
    """Store campaign ``name`` as ``tiltloop run`` would (the config parsed and snapshotted)."""
    parsed = parse_config(config, f"test config {name!r}")
    storage.create_campaign(name, parsed.to_json_dict(), budget=parsed.budget.total)


def record_round(storage: Storage, name: str, index: int, *, shape: tuple[int, ...] = (2,),
                 q: int = 4, num: int = 8, seed: int = 0, succeed: bool = True,
                 fail: int = 0) -> list[str]:
    """Record round ``index`` with ``num`` candidates (``q`` selected, with surrogate predictions
    and the sampler's ESS / λ traces) and give its queries results (the last ``fail`` fail)."""
    rng = np.random.default_rng(seed + 1000 * index)
    cands = [NewCandidate(design=rng.normal(size=shape).astype(np.float32),
                          surrogate_mean=float(rng.normal(1.0 + 0.3 * index)),
                          surrogate_std=0.3, acquisition=float(rng.normal()),
                          group=i // 4, particle=i % 4) for i in range(num)]
    steps = 6
    summary = {"particles": num, "chunks": 2, "tilted": index > 0,
               "ess": [list(np.linspace(1.0, 0.5, steps) * num / 2) for _ in range(2)],
               "lambdas": [list(np.linspace(0.0, 1.0, steps)) for _ in range(2)],
               "log_normalizer": [0.1, 0.2]}
    rec = storage.record_round(name, index, alpha=0.5 / (1 + index), candidates=cands,
                               selected=list(range(q)), oracle_name="pull",
                               summary=summary, timings={"smc_s": 0.5, "fit_s": 0.1},
                               unique_ancestors=max(1, num // (2 + index)))
    keys = list(rec.query_keys)
    if succeed:
        for i, key in enumerate(keys):
            storage.transition_query(key, expected="pending", new="dispatched")
            if i >= len(keys) - fail:
                storage.transition_query(key, expected="dispatched", new="failed",
                                         error=f"HTTP 500: lab instrument {i % 2} offline")
            else:
                storage.transition_query(key, expected="dispatched", new="succeeded",
                                         values={"y": float(rng.normal(0.5 * index))})
    return keys


def finish(storage: Storage, key: str, value: float) -> None:
    """Give the queued query ``key`` its result (pending → dispatched → succeeded)."""
    storage.transition_query(key, expected="pending", new="dispatched")
    storage.transition_query(key, expected="dispatched", new="succeeded", values={"y": value})
