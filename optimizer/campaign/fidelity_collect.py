"""Collect a completed campaign's cheap-oracle answers that its finish gave up on.

A campaign with ``[[oracles]]`` completes once its ``[oracle]`` budget is spent; cheap queries
still unanswered after each oracle's ``wait_s`` stay recorded (a WARNING names their keys).
``tiltloop resume NAME`` on such a completed campaign (``service.drive``) polls them again by
stored job id, under the campaign's driver lease, for at most ``wait_s`` more per oracle: the
answers are stored (``tiltloop status NAME.sim`` / ``export`` show them), the campaign stays
completed, no new query is generated, and the keys still unanswered are logged at WARNING
(each ``resume`` tries once more: nothing loops).

    >>> left = collect_cheap_answers(config, storage)   # doctest: +SKIP
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.driver import outage_retry
from optimizer.campaign.lease import DEFAULT_TTL_S, DriverLease, driver_owner
from storage import Storage
from storage.records import IN_FLIGHT

log = logging.getLogger(__name__)


def collect_cheap_answers(config: CampaignConfig, storage: Storage, *,
                          progress: Callable[[str], None] | None = None,
                          lease_owner: str | None = None, lease_ttl_s: float = DEFAULT_TTL_S,
                          should_stop: Callable[[], bool] | None = None) -> dict[str, list[str]]:
    """Poll the completed campaign ``config.name``'s cheap queries still out (see the module
    docstring). Returns the keys still unanswered per cheap oracle (empty: none left).

    Raises:
        CampaignStateError: another driver holds the campaign's lease.
        DatabaseOutage: the database stayed unreachable past ``storage.outage_window_s``.
    """
    from optimizer.campaign.fidelity import FidelityStage

    say = progress or (lambda _m: None)
    if not config.oracles:
        return {}
    retry = outage_retry(config, storage, should_stop=should_stop)
    out = in_flight_counts(config, storage, retry.call)
    if not out:
        return {}
    say(f"campaign {config.name} is completed; polling its {sum(out.values())} cheap "
        f"quer{'y' if sum(out.values()) == 1 else 'ies'} still unanswered ("
        + ", ".join(f"oracle {o}: {n}" for o, n in out.items()) + ")")
    stage = FidelityStage(config, storage, say)
    stage.call = retry.call
    try:
        with DriverLease(storage, config.name, owner=lease_owner or driver_owner(),
                         ttl_s=lease_ttl_s) as lease:
            def stop() -> bool:
                return lease.lost or (should_stop is not None and should_stop())

            left = stage.collect(stop, counts=out)
        trip = stage.take_trip()
    finally:
        stage.close()
    if trip is not None:  # completed: nothing to pause; the failures are stored and named
        log.warning("campaign %s (completed): collecting its cheap answers: %s (keys %s)",
                    config.name, trip.message, ", ".join(trip.keys[-8:]) or "-")
    for oracle, keys in left.items():
        log.warning("campaign %s (completed): oracle %s: %d cheap quer%s still unanswered (keys "
                    "%s); `tiltloop resume %s` polls them again", config.name, oracle, len(keys),
                    "y" if len(keys) == 1 else "ies", ", ".join(keys[:16]), config.name)
        say(f"oracle {oracle}: {len(keys)} cheap quer{'y' if len(keys) == 1 else 'ies'} still "
            f"unanswered; `tiltloop resume {config.name}` polls them again")
    return left


def in_flight_counts(config: CampaignConfig, storage: Storage,
                     call: Callable[[Callable[[], Any], str], Any]) -> dict[str, int]:
    """Cheap queries in flight per oracle of ``config``, counted in each oracle's own log
    campaign only: an oracle without one, whose campaign of that name is not ``config.name``'s
    cheap-oracle log (an unrelated campaign: never counted or polled, a WARNING names it), or
    with nothing in flight, is left out."""
    from optimizer.campaign.config_fidelity import child_name, is_child_of
    from storage.errors import NotFound

    out: dict[str, int] = {}
    for c in config.oracles:
        name = child_name(config.name, c.name)
        try:
            rec = call(functools.partial(storage.load_campaign, name),
                       f"reading oracle {c.name}'s campaign")
        except NotFound:
            continue
        if not is_child_of(rec.config, config.name):
            log.warning("campaign %s: oracle %s: campaign %s is not its cheap-oracle log; its "
                        "queries are not collected", config.name, c.name, name)
            continue
        counts = call(functools.partial(storage.query_counts, name),
                      f"counting oracle {c.name}'s queries")
        n = int(sum(counts.get(s, 0) for s in IN_FLIGHT))
        if n:
            out[c.name] = n
    return out
