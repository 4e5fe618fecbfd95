"""Helpers for the scheduler and ``tiltloop serve`` tests: small campaign configs,
``tiltloop serve`` subprocesses, bounded waits.

Importable by module name from this folder (pytest puts a test file's folder on ``sys.path``);
the ``tiny_prior_path`` fixture comes from ``tests/conftest.py``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from campaign_configs import campaign_config
from waits import wait_until  # noqa: F401 — the service tests import it from here

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.service import open_storage, start_or_resume
from storage import Storage

ROOT = Path(__file__).resolve().parents[3]


def small_config(name: str, prior: str, lab_url: str, db_url: str, *, total: int = 6, q: int = 2,
                 **sections: dict[str, Any]) -> CampaignConfig:
    """A small campaign: one worker of half a CPU (several campaigns fit on 2 cores)."""
    tables: dict[str, dict[str, Any]] = {
        "sampler": {"num_steps": 6}, "workers": {"count": 1},
        "budget": {"q": q, "max_in_flight": 2 * q, "total": total, "poll_interval_s": 0.1}}
    for key, value in sections.items():
        tables[key] = {**tables.get(key, {}), **value}
    return campaign_config(name, prior, lab_url, db_url, **tables)


def create_campaigns(url: str, configs: list[CampaignConfig]) -> None:
    """Create the schema (if missing) and the campaigns, as ``tiltloop run`` would."""
    with open_storage(url, create=True) as storage:
        for cfg in configs:
            start_or_resume(cfg, storage, source=f"<{cfg.name}>")


def campaign_states(storage: Storage, names: list[str]) -> str:
    """One line per campaign: status, query counts, lease."""
    lines = []
    for name in names:
        try:
            rec = storage.load_campaign(name)
            lease = storage.campaign_lease(name)
            lines.append(f"  {name}: {rec.status} {dict(storage.query_counts(name))} lease="
                         f"{lease.owner if lease else None}")
        except Exception as exc:  # noqa: BLE001 — diagnostics only
            lines.append(f"  {name}: unreadable ({exc})")
    return "\n".join(lines)


class ServeProcess:
    """``python -m optimizer.cli serve --url URL --port 0 ...`` as a subprocess.

    ``url`` and ``owner`` are parsed from its start line; its stderr goes to ``log_path``.
    """

    def __init__(self, db_url: str, log_path: Path, *, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, startup_timeout_s: float = 90.0) -> None:
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                               full_env.get("PYTHONPATH")]))
        full_env.setdefault("TILTLOOP_TEST_THREADS", "1")
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "optimizer.cli", "--log-level", "INFO", "serve",
             "--url", db_url, "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=self._log, env=full_env, text=True, cwd=str(ROOT))
        self.url = ""
        self.owner = ""
        self._read_start_line(startup_timeout_s)

    def _read_start_line(self, timeout_s: float) -> None:
        line: list[str] = []
        assert self.process.stdout is not None
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(timeout_s)
        text = line[0].strip() if line else ""
        if not text.startswith("tiltloop serve: listening on "):
            self.kill()
            pytest.fail(f"tiltloop serve did not start within {timeout_s:.0f} s (stdout: "
                        f"{text!r}, exit code {self.process.poll()})\n{self.stderr_tail()}",
                        pytrace=False)
        # "tiltloop serve: listening on http://127.0.0.1:PORT as replica OWNER"
        rest = text.removeprefix("tiltloop serve: listening on ")
        self.url, _, self.owner = rest.partition(" as replica ")

    def stderr_tail(self, lines: int = 40) -> str:
        """The last lines of the process's stderr, labelled."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            text = []
        return f"--- {self.owner or 'serve'} stderr (last {lines} lines) ---\n" + "\n".join(text)

    def signal(self, sig: int) -> None:
        """Send ``sig`` if it still runs."""
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def close(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; close the log."""
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()
