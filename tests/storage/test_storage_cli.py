"""``tiltloop db upgrade | downgrade REV | current``: exit codes and one-line messages."""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest

from storage import Storage, current
from storage.cli import add_db_parser
from storage.engine import redact


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tiltloop")
    add_db_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_upgrade_current_downgrade(empty_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    shown = redact(empty_url)
    assert _main(["db", "current", "--url", empty_url]) == 0
    assert capsys.readouterr().out == (
        f"none: no tiltloop schema (head is 0007); run: tiltloop db upgrade --url '{shown}'\n")
    assert _main(["db", "upgrade", "--url", empty_url]) == 0
    assert capsys.readouterr().out == f"database {shown} upgraded: empty -> 0007\n"
    assert _main(["db", "upgrade", "--url", empty_url]) == 0
    assert capsys.readouterr().out == f"database {shown} already at revision 0007\n"
    Storage.open(empty_url).close()
    assert _main(["db", "downgrade", "0001", "--url", empty_url, "--yes"]) == 0
    assert capsys.readouterr().out == f"database {shown} downgraded: 0007 -> 0001\n"
    assert _main(["db", "current", "--url", empty_url]) == 0
    assert capsys.readouterr().out == (
        f"0001 (head is 0007); run: tiltloop db upgrade --url '{shown}'\n")
    assert _main(["db", "downgrade", "base", "--url", empty_url, "--yes"]) == 0
    assert current(empty_url) is None


def test_user_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert _main(["db", "downgrade", "zzz", "--url", url, "--yes"]) == 2
    err = capsys.readouterr().err
    assert err == (f"tiltloop db: cannot downgrade database '{url}' to revision 'zzz': Can't "
                   f"locate revision identified by 'zzz'; known revisions: 0001, 0002, 0003, 0004, "
                   f"0005, 0006, 0007 (or "
                   f"'base'/'head')\n")
    monkeypatch.setenv("TILTLOOP_DATABASE_URL", "mysql://u@h/db")
    assert _main(["db", "current"]) == 2
    assert capsys.readouterr().err == (
        "tiltloop db: database URL 'mysql://u@h/db' uses unsupported backend 'mysql'; expected "
        "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE or sqlite:///PATH\n")


class _Terminal(io.StringIO):
    """A stdin that says it is a terminal, with the user's typed answer in it."""

    def isatty(self) -> bool:
        return True


def test_downgrade_without_yes_refused_when_stdin_is_not_a_terminal(
        storage_url: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))  # piped input does not count
    assert _main(["db", "downgrade", "0002", "--url", storage_url]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"tiltloop db: downgrade of database {redact(storage_url)} to revision 0002 drops tables "
        f"and their data, and stdin is not a terminal to confirm it; rerun with --yes to "
        f"proceed\n")
    assert current(storage_url) == "0007"


@pytest.mark.parametrize(("typed", "code", "revision"),
                         [("yes\n", 0, "0002"), ("y\n", 1, "0007"), ("", 1, "0007")])
def test_downgrade_asks_on_a_terminal(storage_url: str, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch, typed: str, code: int,
                                      revision: str) -> None:
    monkeypatch.setattr("sys.stdin", _Terminal(typed))
    assert _main(["db", "downgrade", "0002", "--url", storage_url]) == code
    captured = capsys.readouterr()
    shown = redact(storage_url)
    assert captured.out.startswith(
        f"Downgrade database {shown} from revision 0007 to 0002? This drops the tables and "
        f"columns added after 0002, with their data. Type yes to continue: ")
    if code == 0:
        assert captured.out.endswith(f"database {shown} downgraded: 0007 -> 0002\n")
    else:
        assert captured.err == "tiltloop db: downgrade not confirmed; nothing changed\n"
    assert current(storage_url) == revision


@pytest.mark.slow
def test_console_script_unreachable_server() -> None:
    script = Path(sys.executable).with_name("tiltloop")
    if not script.exists():
        pytest.skip("the tiltloop console script is not installed (pip install -e .)")
    done = subprocess.run(
        [str(script), "db", "upgrade", "--url", "postgresql://postgres:pw@127.0.0.1:1/test"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("tiltloop db: cannot connect to Postgres at 127.0.0.1:1 "
                               "(database 'test', URL 'postgresql+psycopg://postgres:***@127.0.0.1:1/test')")
