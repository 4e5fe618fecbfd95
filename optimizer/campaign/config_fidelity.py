"""``[[oracles]]`` of a campaign config: cheaper oracles (cheap evaluators) with a cost per query.

A simulation that costs seconds can screen designs before a lab that costs days. Each entry is
one more oracle, cheaper than the campaign's ``[oracle]``; each round it scores ``per_round``
of the round's particles first, and the expensive ``[oracle]`` then gets the ``budget.q``
designs the multi-task surrogate prefers given those results (``optimizer.campaign.fidelity``):

    [[oracles]]
    name = "sim"             # unique; "main" is the campaign's own [oracle]
    cost = 0.05              # per query, relative to one query of [oracle]
    per_round = 16           # queries to this oracle per round
    budget = 400             # queries to this oracle in all (default: no limit)
    [oracles.oracle]         # the oracle itself, in the same shape as [oracle]
    kind = "http"
    base_url = "http://127.0.0.1:8766"
"""
from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from optimizer.campaign.config_oracle import OracleConfig, flatten_legacy

#: The name of the campaign's own ``[oracle]`` among its fidelities.
MAIN = "main"
#: Oracle kinds a cheap oracle may not have: a round waits for its answers (``wait_s``), so it
#: must be an oracle object that answers by itself (a person or a pulling lab is not).
REFUSED_KINDS = ("manual", "pull")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


class CheapOracleConfig(BaseModel):
    """One cheap evaluator: an oracle with its own cost, per-round quota and budget.

    Its queries are logged as a campaign of their own, ``{campaign}.{name}`` (its own rounds and
    query keys, sent by the same exactly-once dispatch as ``[oracle]``), so the main budget
    counts only ``[oracle]`` queries and each design goes to each oracle at most once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=32,
                      description='the fidelity\'s name in logs, status and query keys (not "main")')
    cost: float = Field(default=1.0, gt=0, le=1.0,
                        description="cost of one query, relative to one query of [oracle] (1.0)")
    per_round: int = Field(default=8, ge=1, le=100_000,
                           description="queries to this oracle per round (before the [oracle] pick)")
    budget: int | None = Field(default=None, ge=1, le=2**63 - 1,
                               description="queries to this oracle in all (none: no limit)")
    wait_s: float = Field(default=600.0, gt=0, le=86_400.0,
                          description="seconds a round waits for this oracle's answers before the "
                                      "[oracle] pick goes ahead without the missing ones")
    oracle: OracleConfig = Field(description="the oracle itself, in the same shape as [oracle].")

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("oracle"), dict):
            data = {**data, "oracle": flatten_legacy(data["oracle"])}
        return data

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if v == MAIN:
            raise ValueError('"main" names the campaign\'s own [oracle]; choose another name')
        if not _NAME_RE.match(v):
            raise ValueError(f"oracle name {v!r} must be 1-32 letters, digits, '_' or '-' "
                             "(it becomes part of a campaign name and of query keys)")
        return v

    @field_validator("oracle")
    @classmethod
    def _kind_ok(cls, v: BaseModel) -> BaseModel:
        kind = v.kind  # type: ignore[attr-defined]
        if kind in REFUSED_KINDS:
            raise ValueError(f'kind = "{kind}" cannot be a cheap oracle: each round waits for its '
                             "answers; use an oracle that answers by itself (http, command, "
                             "callable or a simulated kind)")
        return v


def child_name(campaign: str, oracle: str) -> str:
    """The campaign that logs cheap oracle ``oracle``'s queries of ``campaign``."""
    return f"{campaign}.{oracle}"


#: key of a cheap oracle's log campaign's stored config naming its parent:
#: ``{"campaign": parent, "oracle": name}`` (not a config field: ``parse_config`` drops it)
MARKER = "fidelity_parent"


def child_marker(config: Any) -> dict[str, str] | None:
    """The parent marker of a stored campaign config (None: not a cheap oracle's log)."""
    mark = config.get(MARKER) if isinstance(config, dict) else None
    if (isinstance(mark, dict) and isinstance(mark.get("campaign"), str)
            and isinstance(mark.get("oracle"), str)):
        return {"campaign": mark["campaign"], "oracle": mark["oracle"]}
    return None


def is_child_of(config: Any, parent: str) -> bool:
    """Whether a stored config is the log campaign of one of ``parent``'s cheap oracles."""
    mark = child_marker(config)
    return mark is not None and mark["campaign"] == parent


def refuse_child(name: str, config: Any) -> None:
    """Refuse to resume or drive a cheap oracle's log campaign on its own: its queries share
    keys and outbox with the parent's driver.

    Raises:
        CampaignStateError: naming the campaign, the oracle and the parent to resume instead.
    """
    from optimizer.errors import CampaignStateError

    mark = child_marker(config)
    if mark is not None:
        raise CampaignStateError(
            f"campaign {name} holds the cheap oracle {mark['oracle']}'s queries of campaign "
            f"{mark['campaign']}; resume {mark['campaign']} instead")


def check_child_names(campaign: str, oracles: list[CheapOracleConfig], storage: Any, *,
                      source: str) -> None:
    """Preflight with the store: no ``[[oracles]]`` log campaign name is taken by a campaign
    that is not ``campaign``'s cheap-oracle log. Writes nothing.

    Raises:
        PreflightError: naming ``source``, the field ``oracles.N.name`` and the campaign.
    """
    from optimizer.errors import PreflightError
    from storage.errors import NotFound

    for i, o in enumerate(oracles):
        name = child_name(campaign, o.name)
        try:
            rec = storage.load_campaign(name)
        except NotFound:
            continue
        if not is_child_of(rec.config, campaign):
            raise PreflightError(
                f"{source}: field `oracles.{i}.name`: cheap oracle {o.name!r} logs its queries in "
                f"campaign {name!r}, but a campaign of that name exists and is not campaign "
                f"{campaign!r}'s cheap-oracle log; rename the oracle or delete campaign {name!r}")


def stored_children(config: dict[str, Any]) -> list[str]:
    """The cheap-oracle log campaigns of a stored campaign config (JSON; not validated)."""
    name = config.get("name")
    entries = config.get("oracles")
    if not isinstance(name, str) or not isinstance(entries, list):
        return []
    return [child_name(name, e["name"]) for e in entries
            if isinstance(e, dict) and isinstance(e.get("name"), str)]


def check_oracles(oracles: list[CheapOracleConfig], *, campaign: str, primary: str,
                  pipeline_mode: str, reported: Any, needed: tuple[str, ...] = ()) -> None:
    """Cross-checks of ``[[oracles]]`` against the rest of the campaign (``CampaignConfig``).
    ``needed``: the outputs the multi-task GPs model besides the primary objective (a Pareto
    campaign's other objectives, the ``[[constraints]]`` outputs): each cheap oracle reports them.

    Raises:
        ValueError: ``[oracles.N.field]`` named, with the remedy.
    """
    seen: set[str] = set()
    for i, o in enumerate(oracles):
        if o.name in seen:
            raise ValueError(f"[oracles.{i}.name] {o.name!r} is used twice; oracle names must be unique")
        seen.add(o.name)
        if len(campaign) + 1 + len(o.name) > 128:
            raise ValueError(f"[oracles.{i}.name] the cheap oracle's log campaign "
                             f"'{campaign}.{o.name}' would be over 128 characters; shorten the "
                             "campaign name or the oracle name")
        names = reported(o.oracle)
        if primary not in names:
            raise ValueError(f"[oracles.{i}.oracle] oracle {o.name!r} reports {list(names)} but the "
                             f"multi-fidelity surrogate needs the primary objective {primary!r}; "
                             "name it as the campaign's first [[objectives]]")
        missing = [n for n in needed if n not in names]
        if missing:
            raise ValueError(f"[oracles.{i}.oracle] oracle {o.name!r} reports {list(names)} but the "
                             f"multi-fidelity surrogate models {missing} too (the campaign's "
                             "objectives of a Pareto campaign and its [[constraints]] outputs, "
                             "one multi-task GP each); list them in the cheap oracle's objectives")
    if oracles and pipeline_mode != "sync":
        raise ValueError('[oracles] cheap oracles need pipeline.mode = "sync" (a round waits for '
                         'the cheap answers before the [oracle] pick); remove [pipeline] mode = '
                         '"async" or the [[oracles]]')
