"""Bounded polling for tests: every wait has a limit and says what it waited for."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_until(check: Callable[[], Any], timeout_s: float, what: str,
               detail: Callable[[], str] = lambda: "", every_s: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy (returned); fail after ``timeout_s``
    saying ``what`` was awaited and ``detail()`` (process logs, state)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{detail()}",
                        pytrace=False)
        time.sleep(every_s)
