"""Client-side errors that used to fail every submit (so the key was resubmitted forever) are
refused when the HTTP oracle is built: a token with a CR/LF or another control character, and
backoff numbers no sleep can take."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from oracles.errors import OracleConfigError
from oracles.http import HttpOracle, RetryPolicy

SECRET = "s3cr3t-token-value"


@pytest.mark.parametrize("text, what", [(f"{SECRET}\r\nsecond-line", "carriage return"),
                                        (f"{SECRET}\nother", "line break"),
                                        (f"{SECRET} other", "space"),
                                        (f"{SECRET}\x00", "U+0000")])
def test_token_file_with_control_characters_is_refused(tmp_path: Path, text: str, what: str) -> None:
    path = tmp_path / "token"
    path.write_bytes(text.encode())
    with pytest.raises(OracleConfigError) as err:
        HttpOracle("http://127.0.0.1:9", token_file=path)
    assert str(path) in str(err.value) and what in str(err.value)
    assert SECRET not in str(err.value)


def test_token_file_with_a_trailing_crlf_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(f"{SECRET}\r\n".encode())
    HttpOracle("http://127.0.0.1:9", token_file=path).close()


def test_token_env_with_a_line_break_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_TOKEN", f"{SECRET}\nX")
    with pytest.raises(OracleConfigError, match="LAB_TOKEN.*line break") as err:
        HttpOracle("http://127.0.0.1:9", token_env="LAB_TOKEN")
    assert SECRET not in str(err.value)


def test_token_file_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"\xff\xfeabc")
    with pytest.raises(OracleConfigError, match="not UTF-8"):
        HttpOracle("http://127.0.0.1:9", token_file=path)


@pytest.mark.parametrize("field", ["backoff_base_s", "backoff_max_s", "retry_after_max_s"])
def test_retry_waits_are_bounded(field: str) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(**{field: 1e308})
