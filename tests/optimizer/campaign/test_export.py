"""``export_campaign`` / ``tiltloop export`` on SQLite and Postgres: a campaign built with the
Storage API, exported as csv / json / npy and read back; values, screening values and designs
must come back exactly as stored (designs bit for bit), top-K in objective order, filters right."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import optimizer.cli as cli
from optimizer.campaign.export import export_campaign, stored_objectives
from optimizer.errors import CampaignStateError, ConfigError
from storage import NewCandidate, Storage, upgrade

OBJECTIVES = [{"name": "y", "direction": "maximize"}, {"name": "cost", "direction": "minimize"}]
# awkward floats: no short decimal form, extremes, negative zero
Y = [0.1 + 0.2, 1 / 3, -2.5e17, 1e-300, 7.0, -0.0]
COST = [5.0, 2.0 / 3.0, 9.25, 3.0, 1e12, 4.5]
FAIL_REASON = "HTTP 422: design must have shape [16], got [2] (job 'j-9f3a')"



def _build(st: Storage, name: str = "exp") -> None:
    """Two rounds of 2 x 3 float32 designs: 6 succeeded, 1 failed, 1 pending query."""
    st.create_campaign(name, {"objectives": OBJECTIVES})
    rng = np.random.default_rng(7)
    for r, picked in ((0, [0, 2, 3, 5]), (1, [0, 1, 4, 5])):
        cands = [NewCandidate(design=rng.normal(size=(2, 3)).astype(np.float32),
                              surrogate_mean=float(rng.normal()),
                              surrogate_std=float(rng.uniform(0.1, 1)),
                              acquisition=float(rng.normal())) for _ in range(6)]
        st.record_round(name, r, alpha=0.5, candidates=cands, selected=picked, oracle_name="lab")
    keys = [q.key for q in st.list_queries(name)]
    for i, key in enumerate(keys[:6]):
        st.transition_query(key, expected="pending", new="dispatched")
        st.transition_query(key, expected="dispatched", new="succeeded",
                            values={"y": Y[i], "cost": COST[i]}, noise={"y": 0.01 * (i + 1)})
    st.transition_query(keys[6], expected="pending", new="failed", error=FAIL_REASON)


def _expected(st: Storage, name: str = "exp") -> dict[str, dict[str, Any]]:
    """What every export row must say, straight from the Storage API."""
    screening = {c.query_key: c for r in (0, 1) for c in st.list_candidates(name, r) if c.query_key}
    return {q.key: {"q": q, "c": screening[q.key]} for q in st.list_queries(name, with_design=True)}


def _num(cell: str) -> float | None:
    return None if cell == "" else float(cell)


def _check_row(row: dict[str, Any], want: dict[str, Any], design: np.ndarray | None) -> None:
    q, c = want["q"], want["c"]
    assert (row["key"], int(row["round"]), row["status"], row["source"]) == (
        q.key, q.round_index, q.status, "exp")
    for obj in ("y", "cost"):
        got = row[obj] if not isinstance(row[obj], str) else _num(row[obj])
        assert got == (q.values or {}).get(obj)
        if got is not None:
            assert np.float64(got).tobytes() == np.float64(q.values[obj]).tobytes()  # -0.0 too
    noise = row["noise_y"] if not isinstance(row["noise_y"], str) else _num(row["noise_y"])
    assert noise == (q.noise or {}).get("y")
    num = (lambda v: v) if not isinstance(row["surrogate_std"], str) else _num
    assert num(row["surrogate_mean"]) == c.surrogate_mean  # y is maximized: as stored
    assert num(row["surrogate_std"]) == c.surrogate_std
    assert num(row["acquisition"]) == c.acquisition
    assert (row["error"] or None) == q.error
    if design is not None:
        assert design.dtype == q.design.dtype == np.float32 and design.shape == (2, 3)
        assert design.tobytes() == q.design.tobytes()


def test_export_round_trips_every_format(storage: Storage, tmp_path: Path) -> None:
    _build(storage)
    want = _expected(storage)
    objectives = stored_objectives(storage, "exp")
    assert objectives == [("y", "maximize"), ("cost", "minimize")]

    res = export_campaign(storage, "exp", tmp_path / "all.csv", format="csv", objectives=objectives)
    rows = list(csv.DictReader((tmp_path / "all.csv").open()))
    assert res.rows == len(rows) == len(want) == 8 and res.design_shape == (2, 3)
    assert [r["key"] for r in rows] == list(want)  # creation order
    for r in rows:
        assert r["shape"] == "2x3"
        flat = np.array([float(r[f"x{i}"]) for i in range(6)]).astype(np.float32).reshape(2, 3)
        _check_row(r, want[r["key"]], flat)

    export_campaign(storage, "exp", tmp_path / "all.json", format="json", objectives=objectives)
    doc = json.loads((tmp_path / "all.json").read_text())
    assert doc["campaign"] == "exp" and doc["objectives"] == ["y", "cost"]
    for r in doc["rows"]:
        assert r["design_shape"] == [2, 3]
        _check_row(r, want[r["key"]], np.array(r["design"], dtype=r["design_dtype"]))

    res = export_campaign(storage, "exp", tmp_path / "npy", format="npy", objectives=objectives)
    designs = np.load(tmp_path / "npy" / "designs.npy", allow_pickle=False)
    assert designs.shape == (8, 2, 3) and designs.dtype == np.float32
    meta = json.loads((tmp_path / "npy" / "rows.json").read_text())["rows"]
    table = list(csv.DictReader((tmp_path / "npy" / "rows.csv").open()))
    assert [m["key"] for m in meta] == [t["key"] for t in table] == list(want)
    assert "x0" not in table[0] and "design" not in meta[0]
    for i, (m, t) in enumerate(zip(meta, table)):
        _check_row(m, want[m["key"]], designs[i])
        _check_row(t, want[t["key"]], None)


def test_top_k_respects_direction(storage: Storage, tmp_path: Path) -> None:
    _build(storage)
    succeeded = [q for q in storage.list_queries("exp") if q.status == "succeeded"]
    for primary, direction in (("y", "maximize"), ("cost", "minimize")):
        other = [("cost", "minimize")] if primary == "y" else [("y", "maximize")]
        out = io.StringIO()
        res = export_campaign(storage, "exp", None, format="json", top=3, stream=out,
                              objectives=[(primary, direction), *other])
        got = [r["key"] for r in json.loads(out.getvalue())["rows"]]
        best = sorted(succeeded, key=lambda q: q.values[primary], reverse=direction == "maximize")
        assert res.rows == 3 and res.path is None
        assert got == [q.key for q in best[:3]]
    # y maximize: 7.0, 1/3, 0.1+0.2 (round 1 query 4, round 0 query 3, round 0 query 0)
    assert [float(r["y"]) for r in csv.DictReader(io.StringIO(_csv(storage, top=3)))] == [
        7.0, 1 / 3, 0.1 + 0.2]
    assert len(list(csv.DictReader(io.StringIO(_csv(storage, top=100))))) == 6  # only succeeded


def test_minimized_surrogate_mean_is_in_the_users_orientation(storage: Storage) -> None:
    _build(storage)
    want = _expected(storage)
    out = io.StringIO()
    export_campaign(storage, "exp", None, format="json", stream=out,
                    objectives=[("cost", "minimize"), ("y", "maximize")])
    for r in json.loads(out.getvalue())["rows"]:
        assert r["surrogate_mean"] == -want[r["key"]]["c"].surrogate_mean


def _csv(st: Storage, **kw: Any) -> str:
    out = io.StringIO()
    export_campaign(st, "exp", Path("-"), format="csv", stream=out,
                    objectives=[("y", "maximize"), ("cost", "minimize")], **kw)
    return out.getvalue()


def test_status_filter_and_failure_reason(storage: Storage) -> None:
    _build(storage)
    failed = list(csv.DictReader(io.StringIO(_csv(storage, statuses=("failed",)))))
    assert [(r["status"], r["error"], r["y"]) for r in failed] == [("failed", FAIL_REASON, "")]
    assert failed[0]["x0"] != ""  # the failed design is exported too
    rows = list(csv.DictReader(io.StringIO(_csv(storage, statuses=("pending", "succeeded")))))
    assert sorted({r["status"] for r in rows}) == ["pending", "succeeded"] and len(rows) == 7


def test_bad_arguments_are_refused(storage: Storage) -> None:
    _build(storage)
    objs = [("y", "maximize")]
    for kw, words in (({"top": 0}, "top: expected an integer >= 1"),
                      ({"statuses": ("done",)}, "must be non-empty and among"),
                      ({"top": 2, "statuses": ("failed",)}, "add succeeded or drop --top"),
                      ({"format": "xlsx"}, "format='xlsx' is not a known choice"),
                      ({"format": "npy"}, "give --out DIR")):
        with pytest.raises(ConfigError, match=words):
            export_campaign(storage, "exp", None, objectives=objs, **kw)
    with pytest.raises(ConfigError, match="direction of 'y' is 'max'"):
        export_campaign(storage, "exp", None, objectives=[("y", "max")])


def test_npy_refuses_mixed_design_shapes(storage: Storage, tmp_path: Path) -> None:
    _build(storage)
    storage.record_round("exp", 2, alpha=0.5, candidates=[NewCandidate(np.zeros(4))],
                         selected=[0], oracle_name="lab")
    with pytest.raises(CampaignStateError, match="different shapes"):
        export_campaign(storage, "exp", tmp_path / "n", format="npy", objectives=[("y", "maximize")])


def test_cli_export_and_unknown_campaign(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    upgrade(db_url)
    with Storage.open(db_url) as st:
        _build(st)
    assert cli.main(["export", "ghost", "--url", db_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tiltloop export: cannot export: campaign 'ghost' not found")
    assert "existing: exp" in err and err.count("\n") == 1

    assert cli.main(["export", "exp", "--url", db_url, "--top", "2", "--format", "json"]) == 0
    out = capsys.readouterr()
    assert [r["y"] for r in json.loads(out.out)["rows"]] == [7.0, 1 / 3]
    assert "exported 2 queries of campaign 'exp' as json to stdout" in out.err

    target = tmp_path / "f.csv"
    assert cli.main(["export", "exp", "--url", db_url, "--status", "failed", "--out", str(target),
                     "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert [r["error"] for r in csv.DictReader(target.open())] == [FAIL_REASON]
