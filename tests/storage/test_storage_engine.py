"""URLs and engines: one clear message per bad input; SQLite pragmas actually applied."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage import DatabaseUnreachable, InvalidDatabaseURL, Storage
from storage.engine import create_engine, parse_url, redact

ACCEPTED = "expected postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE or sqlite:///PATH"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", f"malformed database URL 'not a url'; {ACCEPTED}"),
        ("", f"database URL is empty; {ACCEPTED}"),
        ("mysql://u@h/db", f"database URL 'mysql://u@h/db' uses unsupported backend 'mysql'; {ACCEPTED}"),
        ("postgresql+psycopg2://u:pw@h/db",
         "database URL 'postgresql+psycopg2://u:***@h/db' uses driver 'psycopg2'; tiltloop uses "
         "psycopg 3: write postgresql+psycopg://..."),
        ("postgresql+psycopg://u@h",
         f"database URL 'postgresql+psycopg://u@h' names no database; {ACCEPTED}"),
        ("sqlite://", "database URL 'sqlite://' is an in-memory SQLite database, which loses every "
                      "query when the process stops; write sqlite:///PATH to a file"),
        # unparseable URLs never echo their password; a bad port is named, not a raw ValueError
        ("postgres ql://u:hunter2@h/db", f"malformed database URL 'postgres ql://u:***@h/db'; {ACCEPTED}"),
        ("postgres ql://u:hun@ter2@h/db", f"malformed database URL 'postgres ql://u:***@h/db'; {ACCEPTED}"),
        ("postgresql://u:hun@ter2@h/db", "database URL 'postgresql://u:***@h/db' has an '@' in its "
         "password or host; percent-encode it in the password (%40)"),
        ("postgresql://u:hunter2@h:543x/db", "malformed database URL 'postgresql://u:***@h:543x/db' "
         f"(invalid literal for int() with base 10: '543x'); {ACCEPTED}"),
    ],
)
def test_bad_urls_get_one_clear_message(url: str, message: str) -> None:
    with pytest.raises(InvalidDatabaseURL) as info:
        Storage.open(url)
    assert str(info.value) == message


def test_sqlite_missing_folder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/nope/t.db"
    with pytest.raises(InvalidDatabaseURL) as info:
        parse_url(url)
    assert str(info.value) == (f"database URL {url!r}: folder '{tmp_path}/nope' does not exist; "
                               f"create it or choose another path")


def test_postgres_urls_normalised_to_psycopg3() -> None:
    assert parse_url("postgres://u@h:5/db").drivername == "postgresql+psycopg"
    assert parse_url("postgresql://u@h:5/db").drivername == "postgresql+psycopg"
    assert redact("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"


def test_unreachable_server_names_host_and_remedy() -> None:
    url = "postgresql+psycopg://postgres:secret@127.0.0.1:1/test"
    with pytest.raises(DatabaseUnreachable) as info:
        Storage.open(url)
    text = str(info.value)
    assert text.startswith("cannot connect to Postgres at 127.0.0.1:1 (database 'test', URL "
                           "'postgresql+psycopg://postgres:***@127.0.0.1:1/test'): ")
    assert "Connection refused" in text
    assert text.endswith("; check that the server is running and the URL (--url or "
                         "TILTLOOP_DATABASE_URL)")
    assert "secret" not in text


def test_missing_postgres_database_is_named(pg_schema: str) -> None:
    from pg_schemas import PG_URL

    url = sa.make_url(PG_URL).set(database="tiltloop_no_such_db").render_as_string(False)
    with pytest.raises(DatabaseUnreachable) as info:
        Storage.open(url)
    assert 'database "tiltloop_no_such_db" does not exist' in str(info.value)
    assert str(info.value).startswith("cannot connect to Postgres at ")


def test_sqlite_pragmas(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    engine.dispose()


def test_killed_postgres_connection_is_survived(pg_schema: str) -> None:
    from pg_schemas import postgres_schema_url
    from storage import upgrade
    from storage.engine import create_engine as make

    url = postgres_schema_url(pg_schema)
    upgrade(url)
    with Storage.open(url) as storage:
        storage.create_campaign("c1", {})
        with storage.engine.connect() as conn:  # the pooled connection the next call reuses
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        admin = make(url)
        with admin.connect() as conn:  # what a server restart does to every connection
            conn.execute(sa.text(f"SELECT pg_terminate_backend({pid})"))
        admin.dispose()
        assert storage.load_campaign("c1").name == "c1"  # pre-ping replaced the dead one


def test_connection_lost_mid_transaction_is_one_clear_error(pg_schema: str) -> None:
    # The server goes away between two statements of one repository call: the caller gets
    # DatabaseUnreachable naming the server (no raw driver error), nothing half-written, and the
    # next call works on a fresh connection.
    from pg_schemas import postgres_schema_url
    from storage import upgrade
    from storage.engine import create_engine as make
    from storage_helpers import make_candidates

    url = postgres_schema_url(pg_schema)
    upgrade(url)
    admin = make(url)
    with Storage.open(url) as storage:
        storage.create_campaign("c1", {})

        def cut(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
            if statement.lstrip().startswith("INSERT INTO candidate"):
                pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                with admin.connect() as other:
                    other.execute(sa.text(f"SELECT pg_terminate_backend({pid})"))

        sa.event.listen(storage.engine, "before_cursor_execute", cut)
        with pytest.raises(DatabaseUnreachable, match="cannot connect to Postgres at .*check "
                                                      "that the server is running"):
            storage.record_round("c1", 0, alpha=0.1, candidates=make_candidates(4),
                                 selected=[0], oracle_name="lab")
        sa.event.remove(storage.engine, "before_cursor_execute", cut)
        assert storage.list_rounds("c1") == []  # the round's transaction died whole
        assert storage.record_round("c1", 0, alpha=0.1, candidates=make_candidates(4),
                                    selected=[0], oracle_name="lab").query_keys == ("c1:0:0",)
    admin.dispose()
