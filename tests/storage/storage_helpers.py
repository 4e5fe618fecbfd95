"""Small builders shared by the storage tests (real arrays, real rounds; no mocks)."""
from __future__ import annotations

import numpy as np

from storage import NewCandidate, Storage


def make_candidates(num: int, dim: int = 3, seed: int = 0) -> list[NewCandidate]:
    """``num`` candidates with float32 designs of ``dim`` values and full lineage / screening."""
    rng = np.random.default_rng(seed)
    return [
        NewCandidate(
            design=rng.normal(size=dim).astype(np.float32),
            features=rng.normal(size=2),
            log_weight=float(-rng.exponential()),
            group=i // 4, particle=i % 4,
            surrogate_mean=float(rng.normal()), surrogate_std=float(rng.uniform(0.1, 1.0)),
            acquisition=float(rng.normal()),
        )
        for i in range(num)
    ]


def setup_round(storage: Storage, campaign: str = "c1", num: int = 8,
                selected: tuple[int, ...] = (1, 3, 5), index: int = 0) -> list[str]:
    """Create ``campaign`` (if new) and record round ``index``; returns the query keys."""
    if campaign not in {c.name for c in storage.list_campaigns()}:
        storage.create_campaign(campaign, {"alpha": 0.1})
    record = storage.record_round(campaign, index, alpha=0.1, candidates=make_candidates(num),
                                  selected=list(selected), oracle_name="lab")
    return list(record.query_keys)
