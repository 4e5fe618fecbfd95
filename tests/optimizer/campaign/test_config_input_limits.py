"""Robust config input: UTF-8 with or without a byte-order mark, UTF-16 refused with a message,
size checked before reading, nesting depth limited, and no booleans where numbers are meant."""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.bad_config_cases import BASE, dumps  # noqa: E402
from optimizer.campaign.config_io import (MAX_CONFIG_BYTES, load_config, parse_config,  # noqa: E402
                                          read_toml)
from optimizer.errors import CampaignConfigError  # noqa: E402


def _good() -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.pop("storage")
    return data


def test_utf8_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xef\xbb\xbf" + dumps(_good()).encode())
    assert load_config(path).name == BASE["name"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_is_refused_with_a_message(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(dumps(_good()).encode(encoding))
    with pytest.raises(CampaignConfigError, match=f"{path}.*UTF-16.*save it as UTF-8"):
        read_toml(path)


def test_a_200_mb_file_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    with path.open("wb") as f:  # sparse: claims 200 MB, uses no disk
        f.truncate(200 * 1024 * 1024)

    def never(*_a: Any, **_k: Any) -> bytes:
        raise AssertionError("the file was read")
    monkeypatch.setattr(type(path), "read_bytes", never)
    with pytest.raises(CampaignConfigError, match=f"209,715,200 bytes, more than the "
                                                  f"{MAX_CONFIG_BYTES:,}"):
        read_toml(path)


@pytest.mark.parametrize("text", ["a = " + "[" * 17 + "]" * 17,
                                  "a = " + "[" * 200_000 + "]" * 200_000,
                                  "a = " + "{b = " * 40 + "1" + "}" * 40,
                                  ".".join(["k"] * 40) + " = 1"])
def test_deep_nesting_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text + "\n")
    with pytest.raises(CampaignConfigError, match="nested"):
        read_toml(path)


def test_the_nesting_a_config_needs_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("a = " + "[" * 16 + "]" * 16 + "\n")
    assert read_toml(path)["a"]


@pytest.mark.parametrize("path, value, field", [
    (("workers", "count"), True, "workers.count"),
    (("budget", "total"), True, "budget.total"),  # before the cross-field rule sees total = 1
    (("budget", "max_submit_attempts"), True, "budget.max_submit_attempts"),
    (("budget", "poll_interval_s"), True, "budget.poll_interval_s"),
    (("sampler", "alpha"), [0.5, True], "sampler.alpha.1"),
    (("oracle", "noise_std"), False, "oracle.noise_std"),
    (("seed",), False, "seed"),
])
def test_booleans_are_not_numbers(path: tuple[str, ...], value: Any, field: str) -> None:
    data = _good()
    node = data
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    with pytest.raises(CampaignConfigError) as err:
        parse_config(data, "c.toml")
    assert f"field `{field}`: expected a number, got the boolean" in str(err.value)


def test_booleans_in_a_kind_table_and_real_booleans() -> None:
    data = _good()
    data["oracle"] = {"kind": "http", "base_url": "http://127.0.0.1:9", "verify": False,
                      "retry": {"max_attempts": True}}
    with pytest.raises(CampaignConfigError, match="`oracle.retry.max_attempts`"):
        parse_config(data, "c.toml")
    data["oracle"]["retry"] = {"max_attempts": 2}
    assert parse_config(data, "c.toml").oracle.verify is False  # a bool field keeps its bool
