"""The one session scope of the repository: commit on success, roll back on error, map DB errors.

Every repository method runs inside :meth:`StorageBase.session`; SQLAlchemy and driver errors
are turned into :mod:`storage.errors` types here, so none leaks through the public API.
"""
from __future__ import annotations

import json
import math
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from storage.engine import map_dbapi_error, redact
from storage.errors import IntegrityViolation, InvalidValue, NotFound
from storage.models import EVENT_TABLE, Campaign

#: Campaign names: they become part of idempotency keys, so no ':' and no spaces.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str) -> str:
    """Validate a campaign name (letters, digits, ``. _ -``; at most 128 characters)."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidValue(
            f"campaign name {name!r} is invalid: use 1-128 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit"
        )
    return name


def check_json(value: Any, *, field: str) -> Any:
    """``value`` if it is strict JSON (no NaN / infinity, string keys); else :class:`InvalidValue`."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(f"{field}: not storable as strict JSON ({exc}); use plain numbers, "
                           f"strings, lists and dicts, with no NaN or infinity") from None
    return value


def check_finite(value: float, *, field: str) -> float:
    """``value`` as a finite float; else :class:`InvalidValue` naming the field."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidValue(f"{field}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidValue(f"{field}: must be finite, got {value!r}")
    return number


def default_actor() -> str:
    """Who writes audit events by default: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class StorageBase:
    """Engine, session scope and the helpers every repository mixin shares."""

    def __init__(self, engine: Engine, *, actor: str | None = None) -> None:
        self.engine = engine
        self.actor = (actor or default_actor())[:200]

    @property
    def dialect(self) -> str:
        """``"postgresql"`` or ``"sqlite"``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: commits when the block ends, rolls back and maps errors if it raises."""
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        except IntegrityError as exc:
            raise IntegrityViolation(
                f"database {redact(self.engine.url)!r} refused the write: "
                f"{str(exc.orig).strip().splitlines()[0]}"
            ) from exc
        except DBAPIError as exc:
            raise map_dbapi_error(self.engine.url, exc, doing="a storage transaction") from exc

    def _campaign_id(self, session: Session, name: str) -> int:
        cid = session.scalar(sa.select(Campaign.id).where(Campaign.name == name))
        if cid is None:
            names = session.scalars(sa.select(Campaign.name).order_by(Campaign.id).limit(10)).all()
            known = ", ".join(names) if names else "none"
            raise NotFound(
                f"campaign {name!r} not found in {redact(self.engine.url)!r} (existing: {known}); "
                f"create it first or check --url"
            )
        return cid

    def _log(self, session: Session, campaign_id: int, kind: str, payload: dict[str, Any]) -> None:
        session.execute(
            sa.insert(EVENT_TABLE).values(
                campaign_id=campaign_id, kind=kind, actor=self.actor, payload=payload
            )
        )

