"""The Python API: what the CLI does, for notebooks and scripts.

    >>> from optimizer.api import Campaign
    >>> c = Campaign.open("hartmann-01", "postgresql+psycopg://me@db/tiltloop")   # doctest: +SKIP
    >>> c.status().best                                                          # doctest: +SKIP
    >>> for s in c.ask(4):              # manual mode: designs awaiting a measurement
    ...     print(s.key, s.design.shape)                                          # doctest: +SKIP
    >>> c.tell({"hartmann-01:3:17": {"value": 1.92}, "hartmann-01:3:4": "sample lost"})  # doctest: +SKIP
    >>> rows = c.history()              # list of records; c.history_arrays() for numpy  # doctest: +SKIP

``ask`` starts Ray (and the SMC workers) only when no batch is waiting: a planned batch is read
from the database. ``tell`` validates every result before storing any, exactly like
``tiltloop tell``.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_constraints import recorded_outputs
from optimizer.campaign.driver import CampaignStatus, campaign_status
from optimizer.errors import CampaignStateError
from storage import Storage

_IN_FLIGHT = ("pending", "dispatched", "running")


@dataclass(frozen=True, eq=False)
class Suggestion:
    """A design awaiting its measurement: the idempotency ``key`` to report it under."""

    key: str
    round: int
    design: np.ndarray


@dataclass(frozen=True)
class TellSummary:
    """What ``tell`` stored: keys that succeeded, failed, and keys still awaiting a result."""

    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    still_pending: tuple[str, ...]


class Campaign:
    """A stored campaign, opened by name (see the module docstring).

    Args:
        name: the campaign's name; url: its database (default ``$TILTLOOP_DATABASE_URL``, else
        ``sqlite:///tiltloop.db``).
    """

    def __init__(self, storage: Storage, name: str) -> None:
        from optimizer.campaign.service import load_campaign_config

        self._storage = storage
        self.name = name
        self.config: CampaignConfig = load_campaign_config(storage, name)

    @classmethod
    def open(cls, name: str, url: str | None = None) -> Campaign:
        """Open an existing campaign (``CampaignStateError`` / ``NotFound`` if there is none)."""
        from optimizer.campaign.service import open_storage
        from storage.engine import default_url

        storage = open_storage(url or default_url(), create=False)
        try:
            return cls(storage, name)
        except BaseException:
            storage.close()
            raise

    @classmethod
    def create(cls, config: CampaignConfig | str | Path, url: str | None = None) -> Campaign:
        """Create a campaign from a config (or a TOML path) after the full preflight — or open
        it when it exists with the same config. Nothing runs until ``run`` / ``ask``."""
        from optimizer.campaign.config_io import load_config
        from optimizer.campaign.service import (
            check_imports,
            open_storage,
            preflight,
            start_or_resume,
        )
        from storage.engine import default_url

        source = str(config) if not isinstance(config, CampaignConfig) else "the config"
        if not isinstance(config, CampaignConfig):
            config = load_config(config)
        else:
            # a config object handed in by the caller's own code is the operator's consent to
            # run its oracle in this process (optimizer.campaign.oracle_allow), as a file is
            from optimizer.campaign.oracle_allow import consent

            consent(config.oracle)
            for cheap in config.oracles:
                consent(cheap.oracle)
        preflight(config, source=source)
        storage = open_storage(url or config.storage.url or default_url(), create=True)
        try:
            check_imports(config, storage, source=source)
            start_or_resume(config, storage, source=source)
            return cls(storage, config.name)
        except BaseException:
            storage.close()
            raise

    # ---- reading -------------------------------------------------------------------------------
    def status(self) -> CampaignStatus:
        """Rounds, query counts, best so far, failures grouped by cause."""
        return campaign_status(self._storage, self.name, self.config)

    def history(self, *, with_design: bool = True) -> list[dict[str, Any]]:
        """Every query as a plain record (key, round, status, values, noise, error, design)."""
        rows = self._storage.list_queries(self.name, with_design=with_design)
        return [{"key": q.key, "round": q.round_index, "status": q.status, "values": q.values,
                 "noise": q.noise, "error": q.error, "job_id": q.job_id,
                 "design": None if q.design is None else np.array(q.design)} for q in rows]

    def history_arrays(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Succeeded queries as ``(keys, X, Y)``: `n x *design_shape` designs and `n x m` values
        in the order of ``config.objectives`` (as measured: no sign flip)."""
        names = [o.name for o in self.config.objectives]
        done = self._storage.list_queries(self.name, statuses=("succeeded",), with_design=True)
        if not done:
            return [], np.zeros((0,)), np.zeros((0, len(names)))
        X = np.stack([np.asarray(q.design) for q in done])
        Y = np.array([[(q.values or {}).get(n, np.nan) for n in names] for q in done], dtype=float)
        return [q.key for q in done], X, Y

    # ---- running -------------------------------------------------------------------------------
    def run(self, *, timeout_s: float | None = None, progress: Any = None) -> CampaignStatus:
        """Drive the campaign in this process (as ``tiltloop resume``) until done or timeout."""
        from optimizer.campaign.service import drive

        return drive(self.config, self._storage, progress=progress, timeout_s=timeout_s)

    def ask(self, n: int | None = None) -> list[Suggestion]:
        """Manual mode: up to ``n`` designs awaiting a measurement. A new batch is generated
        (Ray and SMC workers) only when none is waiting and the budget allows one."""
        from optimizer.campaign.service import drive

        self._require_manual()
        if not self._storage.list_queries(self.name, statuses=_IN_FLIGHT):
            drive(self.config, self._storage, once=True)
        waiting = self._storage.list_queries(self.name, statuses=_IN_FLIGHT, with_design=True)
        return [Suggestion(q.key, q.round_index, np.array(q.design))
                for q in waiting[: n if n is not None else len(waiting)]]

    def tell(self, results: Mapping[str, Mapping[str, float] | str]
             | Sequence[Mapping[str, Any]]) -> TellSummary:
        """Report measurements: ``{key: {objective: value}}`` or ``{key: "failure reason"}``, or
        records ``{"key", "values", "noise"?, "error"?}``. Every row is validated first (unknown
        key, missing objective, NaN…): one bad row rejects the call and nothing is stored."""
        from optimizer.campaign.dispatch import Dispatcher
        from optimizer.campaign.oracle import build_oracle
        from oracles.errors import ManualResultsError

        self._require_manual()
        rows = _tell_rows(results)
        oracle = build_oracle(self.config)
        try:
            with tempfile.TemporaryDirectory(prefix="tiltloop-tell-") as tmp:
                path = Path(tmp) / "results.jsonl"  # one row per line: line n is rows[n - 1]
                path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
                try:
                    summary = oracle.inner.import_results(path)
                except ManualResultsError as exc:
                    raise ManualResultsError(f"tell() of campaign {self.name!r}", [
                        (line, f"key {rows[line - 1].get('key')!r}: {msg}" if 0 < line <= len(rows)
                         else msg) for line, msg in exc.problems]) from None
            d = Dispatcher(self._storage, self.name, oracle,
                           objectives=recorded_outputs(self.config),
                           limit=self.config.budget.in_flight_limit)
            d.restore()
            d.poll()
        finally:
            oracle.close()
        return TellSummary(tuple(summary.succeeded), tuple(summary.failed),
                           tuple(summary.still_pending))

    # ---- operations ----------------------------------------------------------------------------
    def pause(self, reason: str = "paused from the Python API") -> None:
        """Stop generating and dispatching (see ``tiltloop campaign pause``)."""
        from optimizer.campaign.operations import pause

        pause(self._storage, self.name, reason=reason)

    def resume(self) -> None:
        """Mark a paused campaign active again (``run`` then drives it)."""
        from optimizer.campaign.operations import unpause

        unpause(self._storage, self.name)

    def set_config(self, *assignments: str, note: str | None = None) -> int:
        """Store a new config version from ``"key.path=value"`` assignments; returns the version."""
        from optimizer.campaign.config_io import apply_overrides
        from optimizer.campaign.operations import new_config_version
        from optimizer.campaign.service import preflight

        config = apply_overrides(self.config, list(assignments))
        preflight(config, source="--set")
        version, _ = new_config_version(self._storage, self.name, config, note=note)
        self.config = config
        return version

    def _require_manual(self) -> None:
        if self.config.oracle.kind != "manual":
            raise CampaignStateError(
                f"campaign {self.name!r} uses a {self.config.oracle.kind!r} oracle; ask/tell are "
                "for [oracle] kind = \"manual\" (use run() instead)")

    def close(self) -> None:
        """Close the database connections."""
        self._storage.close()

    def __enter__(self) -> Campaign:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tell_rows(results: Any) -> list[dict[str, Any]]:
    if isinstance(results, Mapping):
        rows = []
        for key, value in results.items():
            if isinstance(value, str):
                rows.append({"key": key, "error": value})
            else:
                rows.append({"key": key, "values": dict(value)})
        return rows
    return [dict(r) for r in results]
