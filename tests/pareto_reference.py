"""Independent reference computations of Pareto fronts and 2-d hypervolumes, which the Pareto
campaign tests compare the service's figures (status, export, dashboard) against."""
from __future__ import annotations

import numpy as np


def staircase_hv(points: np.ndarray, ref: np.ndarray) -> float:
    """2-d hypervolume (both maximized) by a sweep: sort by the first objective, descending."""
    pts = points[np.all(points > ref, axis=1)]
    hv, best_y = 0.0, ref[1]
    for x, y in sorted(pts.tolist(), key=lambda p: -p[0]):
        if y > best_y:
            hv += (x - ref[0]) * (y - best_y)
            best_y = y
    return hv


def brute_front(points: np.ndarray) -> np.ndarray:
    """Whether each row (maximized) is dominated by no other row: an O(n²) check."""
    n = len(points)
    return np.array([not any(np.all(points[k] >= points[i]) and np.any(points[k] > points[i])
                             for k in range(n)) for i in range(n)])
