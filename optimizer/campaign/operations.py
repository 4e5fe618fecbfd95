"""Campaign operations: pause, resume, cancel, delete, and new config versions.

Each is one storage transaction (or a few, each safe to repeat) and is logged in the campaign's
event log; a driver running elsewhere notices at its next pass (it reads the status and the
config version every pass) and stops or reloads.

    >>> pause(storage, "hartmann-01", reason="lab maintenance")          # doctest: +SKIP
    >>> new_config_version(storage, "hartmann-01", cfg, note="α 0.05")   # doctest: +SKIP
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.crashpoints import crash_point
from optimizer.errors import CampaignStateError
from storage import Storage

log = logging.getLogger(__name__)

_IN_FLIGHT = ("pending", "dispatched", "running")


def pause(storage: Storage, name: str, *, reason: str = "paused by an operator") -> str:
    """Active → paused (nothing new is generated or dispatched; in-flight queries stay recorded
    and are re-polled on resume). Returns the previous status."""
    status = storage.load_campaign(name).status
    if status == "paused":
        return status
    if status != "active":
        raise CampaignStateError(f"campaign {name!r} is {status}; only an active campaign can be paused")
    storage.update_campaign(name, status="paused")
    storage.log_event(name, "campaign.paused", {"reason": reason, "rule": "operator"})
    log.warning("campaign %s paused: %s", name, reason)
    return status


def unpause(storage: Storage, name: str) -> str:
    """Paused → active (a driver — ``tiltloop resume`` or a service — continues it). Returns the
    previous status.

    Raises:
        CampaignStateError: a cheap oracle's log campaign (resume its parent instead)."""
    from optimizer.campaign.config_fidelity import refuse_child

    rec = storage.load_campaign(name)
    refuse_child(name, rec.config)
    status = rec.status
    if status == "active":
        return status
    if status != "paused":
        raise CampaignStateError(f"campaign {name!r} is {status}; only a paused campaign can be resumed")
    storage.update_campaign(name, status="active")
    storage.log_event(name, "campaign.resumed", {"was": "paused"})
    return status


@dataclass(frozen=True)
class CancelOutcome:
    """What ``cancel`` did: outbox queries never sent, and queries the oracle was asked to stop."""

    never_sent: tuple[str, ...]
    at_oracle: tuple[str, ...]


def cancel(storage: Storage, name: str, config: CampaignConfig) -> CancelOutcome:
    """Cancel a campaign for good: queued queries are cancelled before they reach the oracle,
    queries at the oracle are cancelled there (best effort, by stored job id) and marked so.
    The cheap oracles' log campaigns (``[[oracles]]``) are cancelled the same way, after it."""
    from optimizer.campaign.config_io import parse_config

    out = _cancel_one(storage, name, config)
    never_sent, at_oracle = list(out.never_sent), list(out.at_oracle)
    for child in _children(storage, name):
        stored = parse_config(storage.load_campaign(child).config,
                              f"the config stored with campaign {child!r}")
        more = _cancel_one(storage, child, stored)
        never_sent += more.never_sent
        at_oracle += more.at_oracle
    return CancelOutcome(tuple(never_sent), tuple(at_oracle))


def _cancel_one(storage: Storage, name: str, config: CampaignConfig) -> CancelOutcome:
    """:func:`cancel` of one campaign (its own queries only)."""
    from optimizer.campaign.config_oracle import is_pull
    from optimizer.campaign.dispatch import Dispatcher
    from optimizer.campaign.oracle import build_oracle
    from optimizer.campaign.pull_dispatch import PullDispatcher

    status = storage.load_campaign(name).status
    if status == "cancelled":
        return CancelOutcome((), ())
    storage.update_campaign(name, status="cancelled")  # first: no driver dispatches any more
    storage.log_event(name, "campaign.cancelled", {"was": status})
    never_sent = []
    for q in storage.list_queries(name, statuses=("pending",)):
        if storage.transition_query(q.key, expected="pending", new="cancelled",
                                    error="campaign cancelled before dispatch"):
            never_sent.append(q.key)
    at_oracle: list[str] = []
    active = storage.list_queries(name, statuses=("dispatched", "running"))
    if active and is_pull(config.oracle):
        at_oracle = PullDispatcher(storage, name, objectives=[o.name for o in config.objectives]
                                   ).cancel_in_flight()
    elif active and not _oracle_allowed(config):
        # a code-executing oracle this host does not allow is not rebuilt to cancel its jobs:
        # the rows are cancelled all the same (their results would no longer be read)
        for q in active:
            if storage.transition_query(q.key, expected=q.status, new="cancelled",
                                        error="campaign cancelled while at the oracle (the "
                                              "oracle is not allowed on this host, so its job "
                                              "was not cancelled there)"):
                at_oracle.append(q.key)
    elif active:
        oracle = build_oracle(config)
        try:
            d = Dispatcher(storage, name, oracle, objectives=[o.name for o in config.objectives],
                           limit=config.budget.in_flight_limit)
            d.restore()
            at_oracle = d.cancel_in_flight()
        finally:
            oracle.close()
    return CancelOutcome(tuple(never_sent), tuple(at_oracle))


def _oracle_allowed(config: CampaignConfig) -> bool:
    from optimizer.campaign.oracle_allow import OracleNotAllowed, check_oracle_allowed

    try:
        check_oracle_allowed(config.oracle)
    except OracleNotAllowed as exc:
        log.warning("campaign %s: cancelling without the oracle: %s", config.name, exc)
        return False
    return True


def _children(storage: Storage, name: str) -> list[str]:
    """The cheap oracles' log campaigns of ``name`` that exist and carry its marker, from every
    stored config version (an oracle removed by a later version keeps its log)."""
    from optimizer.campaign.config_fidelity import is_child_of, stored_children
    from storage.errors import NotFound

    names: list[str] = []
    for version in storage.config_versions(name):
        names += [c for c in stored_children(version.config) if c not in names]
    out = []
    for child in names:
        try:
            rec = storage.load_campaign(child)
        except NotFound:
            continue
        if is_child_of(rec.config, name):
            out.append(child)
        else:
            log.warning("campaign %s: campaign %s is not its cheap-oracle log (no marker naming "
                        "it); left alone", name, child)
    return out


def delete(storage: Storage, name: str, *, force: bool = False) -> dict[str, int]:
    """Delete the campaign, its cheap oracles' log campaigns and every row under them, in one
    transaction; refuses while queries are in flight (their results would be lost) unless
    ``force``. Returns the deleted row counts per table."""
    children = _children(storage, name)
    in_flight = storage.in_flight_count(name) + sum(storage.in_flight_count(c) for c in children)
    if in_flight and not force:
        raise CampaignStateError(
            f"campaign {name!r} has {in_flight} quer{'y' if in_flight == 1 else 'ies'} in flight at "
            f"the oracle; deleting would lose their results. Cancel it first (`tiltloop campaign "
            f"cancel {name}`), wait for them, or pass --force")
    if in_flight:
        log.warning("campaign %s deleted with %d queries in flight (--force)", name, in_flight)
    # the cheap oracles' logs and the campaign in ONE transaction: a crash or an error midway
    # leaves all of them (the crash point drills it)
    return storage.delete_campaigns([*children, name], allow_in_flight=force,
                                    after_each=lambda _name: crash_point("delete"))


def new_config_version(storage: Storage, name: str, config: CampaignConfig, *,
                       note: str | None = None) -> tuple[int, list[str]]:
    """Store ``config`` as the campaign's next config version (rounds generated from now on
    record it). Returns (version, the dotted fields that changed).

    Raises:
        CampaignStateError: the config names another campaign, or nothing changed.
    """
    from optimizer.campaign.config_io import parse_config
    from optimizer.campaign.service import config_differences

    if config.name != name:
        raise CampaignStateError(f"the new config is for campaign {config.name!r}, not {name!r}; "
                                 "a campaign's name cannot change")
    rec = storage.load_campaign(name)
    if rec.status == "cancelled":
        raise CampaignStateError(f"campaign {name!r} was cancelled; its config cannot change")
    stored = parse_config(rec.config, f"the config stored with campaign {name!r}")
    changed = config_differences(stored.to_json_dict(), config.to_json_dict())
    if not changed:
        raise CampaignStateError(f"the new config of campaign {name!r} equals the stored one; "
                                 "nothing to store")
    version = storage.add_config_version(name, config.to_json_dict(), note=note).version
    if config.budget.total != stored.budget.total:
        reopen = rec.status == "completed" and config.budget.total > stored.budget.total
        storage.update_campaign(name, budget=config.budget.total,
                                status="active" if reopen else None)
    return version, changed
