"""On campaigns produced by real (tiny) runs: ``tiltloop export`` round trips the stored values and
designs (csv / json / npy), the Python API (``Campaign.open``, manual ``ask`` / ``tell``) agrees
with storage, ``TILTLOOP_DATABASE_URL`` is honoured by ``run``, ``--version`` prints the version,
and a ``command`` oracle's relative ``argv`` runs in the config file's folder."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from optimizer.api import Campaign
from optimizer.campaign.config_io import dump_toml
from optimizer.campaign.driver import campaign_status
from optimizer.campaign.service import load_campaign_config
from optimizer.cli import main
from oracles.errors import ManualResultsError
from oracles.labsim import LabSimulator
from storage import Storage
from campaign_oracles import Bowl

_SMALL = {"workers": {"count": 1, "particles_per_worker": 8, "cpus_per_worker": 0.5},
          "sampler": {"alpha": 0.5, "num_steps": 4}}


@pytest.fixture()
def flaky_run(ray_session: str, tiny_prior_path: str, make_config, tmp_path: Path):
    """A finished campaign of 8 queries on a lab where ~40 % of the evaluations fail."""
    url = f"sqlite:///{tmp_path / 'exp.db'}"
    with LabSimulator(Bowl(seed=1, failure_rate=0.4)) as lab:
        cfg = make_config("exp", tiny_prior_path, lab.url, url, **_SMALL,
                          budget={"q": 4, "max_in_flight": 4, "total": 8, "poll_interval_s": 0.05,
                                  "max_consecutive_failures": 100, "max_failure_fraction": 1.0})
        path = tmp_path / "exp.toml"
        path.write_text(dump_toml(cfg))
        assert main(["run", str(path), "-q"]) == 0
    return "exp", url


def _stored(url: str, name: str, statuses=None):  # type: ignore[no-untyped-def]
    with Storage.open(url) as st:
        return st.list_queries(name, statuses=statuses, with_design=True)


@pytest.mark.slow
def test_export_round_trip_via_cli(flaky_run, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    name, url = flaky_run
    stored = {q.key: q for q in _stored(url, name)}
    ok = [q for q in stored.values() if q.status == "succeeded"]
    assert len(stored) == 8 and 3 <= len(ok) < 8  # some failed: the status filter matters

    # csv: the top 3 succeeded, best first, values and float32 designs exact
    out = tmp_path / "top.csv"
    assert main(["export", name, "--url", url, "--format", "csv", "--top", "3",
                 "--status", "succeeded", "--out", str(out), "-q"]) == 0
    rows = list(csv.DictReader(out.open()))
    best = sorted(ok, key=lambda q: -q.values["y"])[:3]
    assert [r["key"] for r in rows] == [q.key for q in best]
    for r in rows:
        q = stored[r["key"]]
        assert r["status"] == "succeeded" and float(r["y"]) == q.values["y"]
        design = np.array([float(r["x0"]), float(r["x1"])], dtype=q.design.dtype)
        assert r["shape"] == "2" and np.array_equal(design, q.design)

    # json: every succeeded query, values equal
    out = tmp_path / "ok.json"
    assert main(["export", name, "--url", url, "--format", "json", "--status", "succeeded",
                 "--out", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert doc["campaign"] == name and doc["objectives"] == ["y"]
    items = doc["rows"]
    assert sorted(i["key"] for i in items) == sorted(q.key for q in ok)
    for i in items:
        q = stored[i["key"]]
        assert i["status"] == "succeeded" and i["y"] == q.values["y"]
        assert i["design_shape"] == [2] and i["design_dtype"] == q.design.dtype.str
        assert np.array_equal(np.asarray(i["design"], dtype=q.design.dtype), q.design)

    # npy: designs bit for bit (dtype too), rows.json in the same order
    folder = tmp_path / "npy"
    assert main(["export", name, "--url", url, "--format", "npy", "--status", "succeeded",
                 "--out", str(folder), "-q"]) == 0
    designs = np.load(folder / "designs.npy", allow_pickle=False)
    meta = json.loads((folder / "rows.json").read_text())
    meta_rows = meta["rows"] if isinstance(meta, dict) else meta
    keys = [m["key"] for m in meta_rows]
    assert sorted(keys) == sorted(q.key for q in ok) and designs.shape == (len(ok), 2)
    for k, d in zip(keys, designs):
        assert d.dtype == stored[k].design.dtype and d.tobytes() == stored[k].design.tobytes()
    capsys.readouterr()


@pytest.mark.slow
def test_api_open_matches_storage(flaky_run) -> None:
    name, url = flaky_run
    with Campaign.open(name, url) as c, Storage.open(url) as st:
        assert c.status() == campaign_status(st, name, load_campaign_config(st, name))
        assert c.status().status == "completed"
        stored = st.list_queries(name, with_design=True)
        hist = c.history()
        assert [h["key"] for h in hist] == [q.key for q in stored]
        for h, q in zip(hist, stored):
            assert (h["status"], h["values"], h["error"], h["round"]) == \
                (q.status, q.values, q.error, q.round_index)
            assert np.array_equal(h["design"], q.design)
        keys, X, Y = c.history_arrays()
        ok = [q for q in stored if q.status == "succeeded"]
        assert keys == [q.key for q in ok]
        assert np.array_equal(X, np.stack([q.design for q in ok]))
        assert np.array_equal(Y[:, 0], np.array([q.values["y"] for q in ok]))


@pytest.mark.slow
def test_api_manual_ask_tell(ray_session: str, tiny_prior_path: str, make_config,
                             tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'manual.db'}"
    cfg = make_config("bench", tiny_prior_path, "http://unused", url, **_SMALL,
                      oracle={"kind": "manual", "options": {"directory": str(tmp_path / "lab")}},
                      budget={"q": 3, "total": 6})
    with Campaign.create(cfg) as c:
        asked = c.ask(2)
        assert len(asked) == 2 and all(s.design.shape == (2,) for s in asked)
        with Storage.open(url) as st:
            assert len(st.list_rounds("bench")) == 1
        again = c.ask(2)  # a batch waits: read back, nothing generated
        assert [s.key for s in again] == [s.key for s in asked]
        assert all(np.array_equal(a.design, b.design) for a, b in zip(asked, again))
        with Storage.open(url) as st:
            assert len(st.list_rounds("bench")) == 1
            assert st.query_counts("bench")["pending"] + st.query_counts("bench")["dispatched"] \
                + st.query_counts("bench")["running"] == 3
        k1, k2 = asked[0].key, asked[1].key

        def untouched() -> None:
            with Storage.open(url) as st:
                counts = st.query_counts("bench")
            assert counts["succeeded"] == counts["failed"] == 0, counts

        with pytest.raises(ManualResultsError, match="no-such-key"):
            c.tell({k1: {"y": 1.0}, "no-such-key": {"y": 2.0}})
        untouched()
        with pytest.raises(ManualResultsError, match="(?i)nan|finite"):
            c.tell({k1: {"y": 1.0}, k2: {"y": math.nan}})
        untouched()

        told = c.tell({k1: {"y": 1.5}, k2: "sample lost"})
        assert told.succeeded == (k1,) and told.failed == (k2,)
        with Storage.open(url) as st:
            q1, q2 = st.get_query(k1), st.get_query(k2)
            counts = st.query_counts("bench")
        assert q1.status == "succeeded" and q1.values == {"y": 1.5}
        assert q2.status == "failed" and "sample lost" in (q2.error or "")
        assert counts["succeeded"] == 1 and counts["failed"] == 1


@pytest.mark.slow
def test_env_database_url_and_version(ray_session: str, tiny_prior_path: str, make_config,
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from tiltloop import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"tiltloop {__version__}"

    env_db = tmp_path / "env.db"
    monkeypatch.setenv("TILTLOOP_DATABASE_URL", f"sqlite:///{env_db}")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    with LabSimulator(Bowl(seed=0)) as lab:
        cfg = make_config("envdb", tiny_prior_path, lab.url, "sqlite:///placeholder.db", **_SMALL,
                          budget={"q": 2, "total": 2, "poll_interval_s": 0.05})
        data = cfg.to_json_dict()
        data.pop("storage", None)
        from optimizer.campaign.config_io import parse_config
        cfg = parse_config(data)
        assert cfg.storage.url is None
        path = tmp_path / "envdb.toml"
        path.write_text(dump_toml(cfg))
        assert "[storage]" not in path.read_text() or "url" not in path.read_text().split("[storage]")[1]
        assert main(["run", str(path), "-q"]) == 0
    assert not (work / "tiltloop.db").exists()
    with Storage.open(f"sqlite:///{env_db}") as st:
        assert [c.name for c in st.list_campaigns()] == ["envdb"]
        assert st.query_counts("envdb")["succeeded"] == 2
    assert main(["status", "envdb"]) == 0  # read commands use the same variable
    assert "completed" in capsys.readouterr().out


SIM = """\
import json, os, sys
req = json.load(sys.stdin)
x = req["design"]
print(json.dumps({"values": {"y": -sum(float(v) ** 2 for v in x)},
                  "metadata": {"cwd": os.getcwd()}}))
"""


@pytest.mark.slow
def test_command_oracle_relative_argv_runs_in_the_config_folder(
        ray_session: str, tiny_prior_path: str, make_config, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "project"
    conf_dir.mkdir()
    (conf_dir / "sim.py").write_text(SIM)
    url = f"sqlite:///{tmp_path / 'cmd.db'}"
    cfg = make_config("cmd", tiny_prior_path, "http://unused", url, **_SMALL,
                      oracle={"kind": "command", "options": {"argv": ["python3", "sim.py"],
                                                             "timeout_s": 60.0}},
                      budget={"q": 2, "total": 2, "poll_interval_s": 0.05})
    data = cfg.to_json_dict()
    data["oracle"].pop("cwd", None)  # as a user writes it: no cwd
    from optimizer.campaign.config_io import parse_config
    path = conf_dir / "campaign.toml"
    path.write_text(dump_toml(parse_config(data)))
    assert "sim.py" in path.read_text() and str(conf_dir) not in path.read_text()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", "../project/campaign.toml", "-q"]) == 0
    with Storage.open(url) as st:
        counts = st.query_counts("cmd")
        queries = st.list_queries("cmd")
    assert counts["succeeded"] == 2 and counts["failed"] == 0, [q.error for q in queries]
