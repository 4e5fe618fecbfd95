"""What the lab simulator was asked: job POSTs counted per idempotency key."""
from __future__ import annotations

from collections import Counter
from typing import Any

from oracles.labsim import LabSimulator


def count_posts(lab: LabSimulator) -> Counter[str]:
    """Counts, per idempotency key, the job POSTs the lab receives from now on (each valid
    ``POST /jobs`` reaches ``JobStore.create``, which deduplicates by key)."""
    posts: Counter[str] = Counter()
    create = lab.store.create

    def counted(key: str, design: Any, metadata: dict[str, Any]) -> Any:
        posts[key] += 1
        return create(key, design, metadata)

    lab.store.create = counted  # type: ignore[method-assign]
    return posts
