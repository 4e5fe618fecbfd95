"""An oracle for campaigns on the multi-node test cluster (``kind = "callable"``, target
``cluster_oracles:bowl``; importable with ``tests/`` on PYTHONPATH)."""
from __future__ import annotations

import time

import numpy as np


def bowl(design: np.ndarray) -> dict[str, float]:
    """`y = -||x - (1, -0.5)||²` for any real 2-d design, after 0.2 s (a lab is not instant)."""
    time.sleep(0.2)
    x = np.asarray(design, dtype=float).reshape(-1)
    return {"y": -float(((x - np.array([1.0, -0.5])) ** 2).sum())}
