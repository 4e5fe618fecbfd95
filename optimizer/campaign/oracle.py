"""Build the campaign's oracle from its config, and check it before anything is written.

``[oracle]`` is already a typed, validated config (``optimizer.campaign.config_oracle``); the
oracle is wrapped in ``SafeOracle``, so no oracle error unwinds the loop: a failing query is
marked failed with its reason.
"""
from __future__ import annotations

from typing import Any

import httpx

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_oracle import build
from optimizer.errors import PreflightError
from oracles.errors import OracleError
from oracles.factory import HttpOracleConfig


def build_oracle(config: CampaignConfig, *, source: str = "the campaign config") -> Any:
    """The oracle named by ``[oracle]``, wrapped in ``SafeOracle``.

    Raises:
        PreflightError: the oracle cannot be built (e.g. an unreadable token file, a missing
            callable); the message names the field and ``source``.
    """
    try:
        return build(config.oracle)
    except (OracleError, TypeError, ValueError, ImportError) as exc:
        raise PreflightError(f"{source}: field `oracle` (kind {config.oracle.kind!r}): {exc}") from None


def check_oracle_reachable(config: CampaignConfig, *, source: str = "the campaign config",
                           timeout_s: float = 5.0) -> None:
    """For an HTTP oracle: ``GET {base_url}/health`` must get an HTTP reply (any status)."""
    if config.oracle.kind != "http":
        return
    oracle = config.oracle
    assert isinstance(oracle, HttpOracleConfig)  # the "http" kind's model extends the factory's
    url = oracle.base_url
    try:
        httpx.get(url.rstrip("/") + "/health", timeout=timeout_s, verify=oracle.verify)
    except httpx.HTTPError as exc:
        raise PreflightError(
            f"{source}: field `oracle.base_url`: the oracle at {url} cannot be reached "
            f"({type(exc).__name__}: {exc}); start the lab service or fix the URL") from None
