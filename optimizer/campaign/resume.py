"""Resume a campaign from the database after any crash, or extend a finished one.

Everything a driver needs is in the database, so ``resume`` is a fresh driver on a stored
campaign: the config snapshot rebuilds the same components, and the driver's first steps
recover whatever a SIGKILL left behind, at any instant:

1. queries at the oracle (``dispatched`` / ``running``) are re-polled by their stored job id
   (the handle events keep a job id the column could not, e.g. after a resubmission);
2. a ``dispatched`` query with no job id (killed between committing the dispatch and storing
   the id) and a query the oracle reports ``unknown`` are resubmitted with the SAME
   idempotency key — an idempotent oracle returns the same job and evaluates once;
3. ``pending`` outbox queries are dispatched before any new round is generated;
4. a round killed during SMC left nothing (rounds, candidates and queries are written in one
   transaction), so it is regenerated — with the same derived seeds;
5. ``--budget`` above the stored total re-opens a finished campaign for the extra queries;
6. a campaign paused (by a budget guard or ``tiltloop campaign pause``) becomes active again:
   fix the cause first — the guard pauses it again after the same number of failures;
7. a ``callable`` / ``command`` oracle read from the database runs only where this host's
   allowlist allows it (``optimizer.campaign.oracle_allow``); otherwise ``resume`` refuses
   before writing anything.

    >>> status = resume_campaign("c1", "sqlite:///tiltloop.db", budget=128)   # doctest: +SKIP
"""
from __future__ import annotations

from optimizer.campaign.driver import CampaignStatus
from optimizer.campaign.oracle_allow import check_oracle_allowed
from optimizer.campaign.service import (
    Progress,
    drive,
    load_campaign_config,
    open_storage,
)
from optimizer.campaign.config_fidelity import refuse_child
from optimizer.errors import CampaignStateError


def resume_campaign(name: str, url: str, *, budget: int | None = None,
                    progress: Progress | None = None, timeout_s: float | None = None,
                    once: bool = False) -> CampaignStatus:
    """Continue campaign ``name`` from the database; ``budget`` raises its total budget."""
    storage = open_storage(url, create=False)
    try:
        refuse_child(name, storage.load_campaign(name).config)
        config = load_campaign_config(storage, name)
        # read from the database: a code-executing oracle needs this host's allowlist; refused
        # here, before anything is written (the same check guards every oracle build)
        check_oracle_allowed(config.oracle)
        if budget is not None:
            if budget < config.budget.total:
                raise CampaignStateError(
                    f"--budget {budget} is below campaign {name!r}'s current budget "
                    f"{config.budget.total}; a budget can only be extended")
            if budget != config.budget.total:
                config = config.with_budget(budget)
                storage.update_campaign(name, config=config.to_json_dict(), budget=budget,
                                        status="active")
                if progress:
                    progress(f"budget of {name} extended to {budget} queries")
        rec = storage.load_campaign(name)
        refuse_child(name, rec.config)
        if rec.status == "cancelled":
            raise CampaignStateError(f"campaign {name!r} was cancelled; it cannot be resumed")
        if rec.status == "paused":
            storage.update_campaign(name, status="active")
            storage.log_event(name, "campaign.resumed", {"was": "paused"})
            if progress:
                progress(f"campaign {name} was paused; resuming it")
        return drive(config, storage, progress=progress, timeout_s=timeout_s, once=once)
    finally:
        storage.close()
