"""Build the campaign's oracle from its config, and check it can be reached before anything is
written. ``oracles.factory`` validates the options per kind and wraps the oracle in
``SafeOracle``, so no oracle error unwinds the loop: a failing query is marked failed with its
reason.
"""
from __future__ import annotations

from typing import Any

import httpx

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.errors import PreflightError
from oracles.errors import OracleError
from oracles.factory import build_oracle as factory_build


def oracle_options(kind: str, options: dict[str, Any], objectives: list[str]) -> dict[str, Any]:
    """The options as the factory wants them: the campaign's objectives filled in when the kind
    takes an ``objectives`` list and the config gave none."""
    from oracles.factory import ORACLE_KINDS, _load_plugins

    _load_plugins()
    opts = dict(options)
    spec = ORACLE_KINDS.get(kind)
    if spec is not None and "objectives" in spec[0].model_fields:
        opts.setdefault("objectives", list(objectives))
    return opts


def build_oracle(config: CampaignConfig, *, source: str = "the campaign config") -> Any:
    """The oracle named by ``[oracle]``, wrapped in ``SafeOracle``.

    Raises:
        PreflightError: the options are invalid for that kind (message names ``oracle.options``).
    """
    kind = config.oracle.kind
    opts = oracle_options(kind, config.oracle.options, [o.name for o in config.objectives])
    try:
        return factory_build(kind, opts)
    except (OracleError, TypeError, ValueError) as exc:
        raise PreflightError(f"{source}: field `oracle.options` (kind {kind!r}): {exc}") from None


def check_oracle_reachable(config: CampaignConfig, *, source: str = "the campaign config",
                           timeout_s: float = 5.0) -> None:
    """For an HTTP oracle: ``GET {base_url}/health`` must get an HTTP reply (any status)."""
    if config.oracle.kind != "http":
        return
    opts = config.oracle.options
    url = str(opts.get("base_url") or "")
    try:
        httpx.get(url.rstrip("/") + "/health", timeout=timeout_s, verify=opts.get("verify", True))
    except httpx.HTTPError as exc:
        raise PreflightError(
            f"{source}: field `oracle.options.base_url`: the oracle at {url} cannot be reached "
            f"({type(exc).__name__}: {exc}); start the lab service or fix the URL") from None
