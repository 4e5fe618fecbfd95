"""Small builders shared by the service API tests (real configs, real rounds; no mocks)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from storage import NewCandidate, Storage


def config_data(name: str, prior: str, **sections: Any) -> dict[str, Any]:
    """A small valid campaign config as JSON (a pull oracle); ``sections`` update whole tables'
    keys (a dict) or replace a value."""
    data: dict[str, Any] = {
        "name": name, "seed": 3,
        "prior": {"name": prior},
        "oracle": {"kind": "pull"},
        "objectives": [{"name": "y", "direction": "maximize"}],
        "feature_map": {"kind": "identity"},
        "sampler": {"alpha": 0.5, "num_steps": 8},
        "workers": {"count": 1, "particles_per_worker": 16, "cpus_per_worker": 0.5},
        "budget": {"q": 4, "max_in_flight": 8, "total": 12, "poll_interval_s": 0.05},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data


def queue_round(storage: Storage, campaign: str, *, index: int = 0, num: int = 6,
                selected: tuple[int, ...] = (0, 1, 2, 3), seed: int = 0) -> list[str]:
    """Record round ``index`` of ``campaign`` with 2-d float32 designs (what a driver would do);
    returns the keys of its queued queries."""
    rng = np.random.default_rng(seed)
    candidates = [NewCandidate(design=rng.normal(size=2).astype(np.float32),
                               surrogate_mean=float(i), surrogate_std=0.5,
                               acquisition=float(i)) for i in range(num)]
    rec = storage.record_round(campaign, index, alpha=0.5, candidates=candidates,
                               selected=list(selected), oracle_name="pull")
    return list(rec.query_keys)


@dataclass(frozen=True)
class Tokens:
    """Secrets of one token per scope (``lab_a``: lab:pull-a, ``lab_b``: lab:pull-b)."""

    admin: str
    read: str
    lab_a: str
    lab_b: str

    def all(self) -> list[str]:
        return [self.admin, self.read, self.lab_a, self.lab_b]


def bearer(secret: str) -> dict[str, str]:
    """The Authorization header of ``secret``."""
    return {"Authorization": f"Bearer {secret}"}


def create(client: httpx.Client, admin: str, data: dict[str, Any]) -> httpx.Response:
    """``POST /v1/campaigns`` with a JSON config."""
    return client.post("/v1/campaigns", json={"config": data}, headers=bearer(admin))


@dataclass
class Live:
    """The app served on loopback: its base URL, the app, and its metrics."""

    url: str
    app: Any
    metrics: Any  # optimizer.service.metrics.ServiceMetrics
