"""The inputs issue 18 saw end in tracebacks, each through the ``tiltloop`` command line: a very
long prior name (ENAMETOOLONG), a missing CA file, a deeply nested or UTF-16 TOML file, a huge CSV
field in ``tell``. Each must exit 2 with one message naming the field or file, print no
traceback, and write nothing (no campaign row; for ``tell``, no result)."""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.bad_config_cases import BASE, ORACLE_BASES, ReachedRay, campaign_rows, dumps, refuse_ray  # noqa: E402
from campaign_configs import campaign_config  # noqa: E402
from optimizer.campaign import service  # noqa: E402
from optimizer.cli import main  # noqa: E402


def _config(tmp_path: Path, **changes: Any) -> tuple[Path, Path]:
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        section, _, key = dotted.partition("__")
        if key:
            data[section] = {**data[section], key: value}
        else:
            data[section] = value
    db = tmp_path / "campaign.db"
    path = tmp_path / "campaign.toml"
    path.write_text(dumps(data).replace("@@DB_URL@@", f"sqlite:///{db}"), encoding="utf-8")
    return path, db


def _run(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
         ) -> tuple[int, str]:
    monkeypatch.setattr(service, "ray_runtime", refuse_ray)
    try:
        code = main(args)
    except ReachedRay as exc:
        pytest.fail(str(exc))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    return code, err


@pytest.mark.parametrize("name", ["p" * 300, "p" * 4096, "/tmp/" + "d" * 300 + "/prior",
                                  "/tmp/" + "/".join(["d" * 250] * 20)])
def test_a_very_long_prior_name(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    path, db = _config(tmp_path, prior={"name": name})
    code, err = _run(["run", str(path)], capsys, monkeypatch)
    assert code == 2 and err.startswith("tiltloop run: ") and "prior" in err, err[:500]
    assert len(err) < 20_000  # the message quotes the name shortened, if at all
    assert campaign_rows(db) == 0


@pytest.mark.parametrize("content", [None, b"not a certificate\n"], ids=["missing", "not-pem"])
def test_a_missing_or_bad_ca_file(content: bytes | None, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ca = tmp_path / "lab-ca.pem"
    if content is not None:
        ca.write_bytes(content)
    oracle = {**ORACLE_BASES["http"], "base_url": "https://127.0.0.1:9/", "verify": str(ca)}
    path, db = _config(tmp_path, oracle=oracle)
    code, err = _run(["run", str(path)], capsys, monkeypatch)
    assert code == 2 and "lab-ca.pem" in err and "verify" in err, err[:500]
    assert campaign_rows(db) == 0


@pytest.mark.parametrize("kind", ["arrays", "inline-tables", "dotted-keys"])
def test_a_deeply_nested_toml_file(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path, db = _config(tmp_path)
    deep = {"arrays": "x = " + "[" * 20_000 + "]" * 20_000,
            "inline-tables": "x = " + "{a = " * 5_000 + "1" + "}" * 5_000,
            "dotted-keys": ".".join(["a"] * 3_000) + " = 1"}[kind]
    path.write_text(deep + "\n" + path.read_text(), encoding="utf-8")
    code, err = _run(["run", str(path)], capsys, monkeypatch)
    assert code == 2 and str(path) in err and "nest" in err, err[:500]
    assert campaign_rows(db) == 0


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_a_utf16_toml_file(encoding: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    path, db = _config(tmp_path)
    path.write_bytes(path.read_text(encoding="utf-8").encode(encoding))
    code, err = _run(["run", str(path)], capsys, monkeypatch)
    assert code == 2 and str(path) in err and "UTF-8" in err, err[:500]
    assert campaign_rows(db) == 0


def test_a_huge_csv_field_in_tell(tmp_path: Path, tiny_prior_path: str,
                                  capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from storage import NewCandidate
    import numpy as np

    url = f"sqlite:///{tmp_path / 'manual.db'}"
    cfg = campaign_config("by-hand", tiny_prior_path, "http://127.0.0.1:9", url,
                          oracle={"kind": "manual", "directory": str(tmp_path / "lab")})
    with service.open_storage(url, create=True) as st:
        service.start_or_resume(cfg, st, source="test")
        st.record_round("by-hand", 0, alpha=1.0, candidates=[NewCandidate(np.array([0.1, 0.2]))],
                        selected=[0], oracle_name="manual")
    results = tmp_path / "results.csv"
    results.write_text("key,y,error\nby-hand:0:0,1.5," + "e" * 2_000_000 + "\n")
    code, err = _run(["tell", "by-hand", str(results), "--url", url], capsys, monkeypatch)
    assert code == 2 and "results.csv" in err and "line 2" in err, err[:500]
    with service.open_storage(url, create=False) as st:
        assert st.query_counts("by-hand")["succeeded"] == 0
