"""``tomllib`` from the standard library (Python ≥ 3.11), else the ``tomli`` backport (3.10)."""
from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["tomllib"]
