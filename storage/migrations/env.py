"""Alembic environment of tiltloop's schema (shipped inside the package).

:mod:`storage.migrate` hands over an open connection in ``config.attributes["connection"]``;
there is no alembic.ini. SQLite gets ``render_as_batch`` (ALTER TABLE by copy-and-move).
"""
from __future__ import annotations

from alembic import context

from storage.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only storage.migrate drives this environment
    raise RuntimeError("run migrations through storage.migrate (tiltloop db upgrade), not alembic")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
