"""``tiltloop ask`` / ``tell`` for a pull campaign: a person at a shell is one more lab client.

They go through the same storage calls as the service's pull routes (``claim_work`` /
``report_work``), so leases, idempotency and "a result is stored once" hold for them as for a
lab robot: ``ask`` claims the queued designs for client ``cli:<user>@<host>`` and writes them,
with those it still holds, to a CSV/JSON file in the manual oracle's format; ``tell`` validates
every row of the filled-in file first (the manual oracle's checks: finite numbers, every
objective, keys this client holds — one bad row rejects the file, nothing is stored), then
reports each result.
"""
from __future__ import annotations

import getpass
import socket
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_constraints import recorded_outputs
from optimizer.campaign.config_oracle import PullOracleConfig
from oracles.manual import ManualOracle
from oracles.protocol import JobHandle, QueryRequest
from storage import QueryRecord, Storage
from storage.errors import WorkNotHeld


def cli_client_id() -> str:
    """This shell's lab client id: ``cli:<user>@<host>``."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"[:200]


def held_by(storage: Storage, name: str, client_id: str, *, reported: bool = False
            ) -> list[QueryRecord]:
    """The campaign's queries claimed by ``client_id`` and not yet reported (with designs);
    with ``reported``, also those it already reported (a file told twice is then validated
    row by row, and storing an identical result again is a no-op)."""
    statuses = ("dispatched", "succeeded", "failed") if reported else ("dispatched",)
    return storage.work_of(name, client_id, statuses=statuses, with_design=True)


def _as_manual(directory: Path, config: CampaignConfig, held: list[QueryRecord]) -> ManualOracle:
    """A manual oracle over ``held``: its exporter and row validator are the file format."""
    oracle = ManualOracle(directory, recorded_outputs(config),
                          name=f"campaign {config.name}",
                          where=f"the designs this client holds in campaign {config.name!r}")
    oracle.submit([QueryRequest(q.key, q.design) for q in held if q.design is not None])
    return oracle


def ask(storage: Storage, config: CampaignConfig, out: Path, *,
        client_id: str | None = None) -> tuple[Path, int]:
    """Claim the campaign's queued designs and write every design this client holds to ``out``
    (``.json``: JSON, else CSV). Returns (the file, how many designs it lists)."""
    assert isinstance(config.oracle, PullOracleConfig)
    client = client_id or cli_client_id()
    storage.claim_work(config.name, client, uuid.uuid4().hex, config.oracle.max_claim_items,
                       config.oracle.lease_s)
    held = held_by(storage, config.name, client)
    with tempfile.TemporaryDirectory(prefix="tiltloop-ask-") as tmp:
        _as_manual(Path(tmp), config, held).export_pending(out)
    return out, len(held)


@dataclass(frozen=True)
class TellOutcome:
    """What ``tell`` stored now: keys per outcome (a result stored before is not counted again);
    ``refused``: (key, why) not stored."""

    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    still_pending: tuple[str, ...]
    refused: tuple[tuple[str, str], ...]


def tell(storage: Storage, config: CampaignConfig, path: Path, *,
         client_id: str | None = None) -> TellOutcome:
    """Validate every row of ``path``, then report each filled-in row as this client.

    Raises:
        ManualResultsError: a bad row (with its line number); nothing was stored.
    """
    client = client_id or cli_client_id()
    held = held_by(storage, config.name, client, reported=True)
    with tempfile.TemporaryDirectory(prefix="tiltloop-tell-") as tmp:
        manual = _as_manual(Path(tmp), config, held)
        summary = manual.import_results(path)
        results = {r.key: r for r in manual.poll(
            [JobHandle(k, k) for k in (*summary.succeeded, *summary.failed)])}
    refused: list[tuple[str, str]] = []
    stored: set[str] = set()
    for key, r in results.items():
        try:
            if storage.report_work(key, client, values=r.values, noise=r.noise,
                                   error=r.error if r.status == "failed" else None):
                stored.add(key)
        except WorkNotHeld as exc:
            refused.append((key, str(exc)))
    return TellOutcome(succeeded=tuple(k for k in summary.succeeded if k in stored),
                       failed=tuple(k for k in summary.failed if k in stored),
                       still_pending=summary.still_pending, refused=tuple(refused))

