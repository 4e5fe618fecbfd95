"""Campaign config versions: every config a campaign ever had, numbered 1, 2, ... per campaign.

``campaign.config`` is always the newest version: :meth:`create_campaign` writes version 1 and
each change appends version `n + 1` and sets ``campaign.config`` in the same transaction.

Two writers racing for `n + 1`: the unique constraint ``(campaign_id, version)`` lets exactly one
win; the other gets :class:`ConfigVersionConflict` (Postgres). SQLite serialises writers
(``BEGIN IMMEDIATE``), so there the second one reads `n + 1` and appends `n + 2`.

>>> storage.add_config_version("c1", {"alpha": 0.05}, note="cooler tilt after round 12")
ConfigVersionRecord(version=2, ...)
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.clock import db_now
from storage.errors import ConfigVersionConflict, InvalidValue, NotFound
from storage.models import Campaign, CampaignConfig
from storage.records import ConfigVersionRecord
from storage.session import StorageBase, check_json


def latest_version(session: Session, campaign_id: int) -> int | None:
    """The campaign's newest config version (None only for rows no tiltloop API wrote)."""
    return session.scalar(
        sa.select(sa.func.max(CampaignConfig.version))
        .where(CampaignConfig.campaign_id == campaign_id)
    )


def _check_note(note: str | None) -> str | None:
    if note is not None and not isinstance(note, str):
        raise InvalidValue(f"note: expected text or None, got {type(note).__name__} {note!r:.40}")
    return note


def _conflict(campaign: str, version: int) -> str:
    return (
        f"campaign {campaign!r}: config version {version} was written by another writer at the "
        f"same time; reload the current config (config_versions({campaign!r})) and apply your "
        f"change again"
    )


def append_config_version(
    session: Session,
    *,
    campaign: str,
    campaign_id: int,
    config: dict[str, Any],
    note: str | None,
    expected_version: int | None = None,
) -> ConfigVersionRecord:
    """Insert version `n + 1` (n read in this transaction) and make it ``campaign.config``.

    Raises:
        ConfigVersionConflict: ``expected_version`` is not the newest version, or a concurrent
            writer inserted `n + 1` first (its unique constraint refused ours).
    """
    current = latest_version(session, campaign_id) or 0
    if expected_version is not None and expected_version != current:
        raise ConfigVersionConflict(
            f"campaign {campaign!r} is at config version {current}, not {expected_version} as "
            f"expected; reload the current config (config_versions({campaign!r})) and apply "
            f"your change again"
        )
    version = current + 1
    try:
        created_at = session.scalar(
            sa.insert(CampaignConfig)
            .values(campaign_id=campaign_id, version=version, config=config, note=note)
            .returning(CampaignConfig.created_at)
        )
    except IntegrityError as exc:
        text = str(exc.orig).lower()
        if "unique" in text and "campaign_config" in text:
            raise ConfigVersionConflict(_conflict(campaign, version)) from None
        raise
    if version > 1:
        session.execute(sa.update(Campaign).where(Campaign.id == campaign_id)
                        .values(config=config, updated_at=db_now()))
    assert created_at is not None
    return ConfigVersionRecord(version=version, config=config, note=note, created_at=created_at)


class ConfigVersionsMixin(StorageBase):
    """Campaign config versions."""

    def add_config_version(
        self,
        name: str,
        config: dict[str, Any],
        *,
        note: str | None = None,
        expected_version: int | None = None,
    ) -> ConfigVersionRecord:
        """Append config version `n + 1` of campaign ``name`` and make it the current config.

        One transaction: insert the version, set ``campaign.config``, log the event
        ``campaign.config_changed`` with ``{"old_version": n, "new_version": n + 1}`` (the
        versions, not the config; plus ``note`` when given).

        Args:
            note: why the config changed (free text, shown by ``config_versions``).
            expected_version: the version the caller's change was based on; the write is refused
                if another one was added since (optimistic concurrency for read-edit-write).

        Raises:
            ConfigVersionConflict: a concurrent writer added the same version first, or
                ``expected_version`` is stale. NotFound: no such campaign.

        >>> storage.add_config_version("c1", {"alpha": 0.05}, note="cooler").version
        2
        """
        check_json(config, field="config")
        if not isinstance(config, dict):
            raise InvalidValue(f"config: expected a JSON object (dict), got {type(config).__name__}")
        _check_note(note)
        with self.session() as session:
            cid = self._campaign_id(session, name)
            record = append_config_version(
                session, campaign=name, campaign_id=cid, config=config, note=note,
                expected_version=expected_version,
            )
            payload: dict[str, Any] = {"old_version": record.version - 1,
                                       "new_version": record.version}
            if note is not None:
                payload["note"] = note[:500]
            self._log(session, cid, "campaign.config_changed", payload)
            return record

    def config_versions(self, name: str) -> list[ConfigVersionRecord]:
        """Every config version of campaign ``name``, oldest (version 1) first."""
        with self.session() as session:
            cid = self._campaign_id(session, name)
            rows = session.scalars(
                sa.select(CampaignConfig).where(CampaignConfig.campaign_id == cid)
                .order_by(CampaignConfig.version)
            ).all()
            return [ConfigVersionRecord(version=r.version, config=r.config, note=r.note,
                                        created_at=r.created_at) for r in rows]

    def current_config_version(self, name: str) -> int:
        """The number of campaign ``name``'s current (newest) config version."""
        with self.session() as session:
            cid = self._campaign_id(session, name)
            version = latest_version(session, cid)
            if version is None:
                raise NotFound(
                    f"campaign {name!r} has no config versions (its row was not written by "
                    f"tiltloop's API); add one with add_config_version({name!r}, config)"
                )
            return version
