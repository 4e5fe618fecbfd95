"""The ``tiltloop`` CLI: bad input gives one clear message and exit 2 with nothing written;
run / status / report / resume --budget work end to end (gmm-toy prior, lab simulator over HTTP)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optimizer.campaign.config_io import dump_toml, parse_config
from optimizer.cli import main
from oracles.labsim import LabSimulator
from oracles.simulated.base import SimulatedOracle


class _Peak(SimulatedOracle):
    """`y = -||x - (4, 0)||²`: any 2-d design is valid."""

    def __init__(self) -> None:
        self.objectives = ("y",)
        super().__init__(seed=0)

    def score(self, design: np.ndarray) -> dict[str, float]:
        return {"y": -float(((np.asarray(design) - np.array([4.0, 0.0])) ** 2).sum())}


@pytest.fixture()
def lab_url() -> Iterator[str]:
    sim = LabSimulator(_Peak()).start()
    try:
        yield sim.url
    finally:
        sim.close()


def _config(tmp_path: Path, lab_url: str, **over: Any) -> tuple[Path, str]:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    data: dict[str, Any] = {
        "name": "cli1", "seed": 1, "prior": {"name": "gmm-toy"},
        "oracle": {"kind": "http", "options": {"base_url": lab_url}},
        "objectives": [{"name": "y"}], "sampler": {"alpha": 1.0, "num_steps": 8},
        "workers": {"count": 2, "particles_per_worker": 16, "cpus_per_worker": 0.5},
        "budget": {"q": 3, "total": 3, "poll_interval_s": 0.05}, "storage": {"url": db},
    }
    data.update(over)
    path = tmp_path / "campaign.toml"
    path.write_text(dump_toml(parse_config(data)))
    return path, db


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (("prior.name", '"gmm-toy"', '"no-such-prior"'),
         # a relative folder resolves against the config file's folder, and the message says so
         "no-such-prior' is neither a bundled prior nor an existing folder"),
        (("sampler.alpha", "alpha = 1.0", "alpha = -0.5"),
         "field `sampler.alpha`: alpha must be a finite number > 0"),
        (("budget.total", "total = 3", "total = 2"), "total budget 2 is below q = 3"),
        (("oracle.base_url", "http://127.0.0.1:", "http://127.0.0.1:1#"),
         "field `oracle.base_url`: the oracle at"),
    ],
)
def test_bad_config_one_message_nothing_written(tmp_path: Path, lab_url: str,
                                                capsys: pytest.CaptureFixture[str],
                                                edit: tuple[str, str, str], words: str) -> None:
    path, _ = _config(tmp_path, lab_url)
    _, old, new = edit
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tiltloop run: ") and words in err, err
    # the message names the config file itself, never the generic "the campaign config"
    assert str(path) in err and "the campaign config" not in err, err
    assert not (tmp_path / "cli.db").exists()  # nothing written


def test_unknown_campaign_and_empty_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["status", "--url", url]) == 2
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()  # a read-only command creates nothing
    (tmp_path / "none.db").touch()  # an empty file: the schema is missing
    assert main(["status", "--url", url]) == 2
    assert "tiltloop db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade", "--url", url]) == 0
    capsys.readouterr()
    assert main(["resume", "ghost", "--url", url]) == 2
    assert "ghost" in capsys.readouterr().err
    assert main(["status", "--url", url]) == 0
    assert "no campaigns yet" in capsys.readouterr().out


@pytest.mark.slow
def test_run_status_report_extend(ray_session: str, tmp_path: Path, lab_url: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    path, db = _config(tmp_path, lab_url)
    assert main(["run", str(path), "--json"]) == 0
    out = capsys.readouterr()
    status = json.loads(out.out)
    assert status["status"] == "completed" and status["results"] == 3
    assert "round 0" in out.err  # progress lines go to stderr with --json
    # the same file again is an idempotent start: it reports the completed campaign, exit 0
    assert main(["run", str(path)]) == 0
    assert "already exists with this config (completed)" in capsys.readouterr().out

    assert main(["resume", "cli1", "--url", db, "--budget", "6", "-q", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["results"] == 6 and status["budget"] == 6 and status["rounds"] == 2
    assert main(["status", "cli1", "--url", db]) == 0
    assert "completed" in capsys.readouterr().out

    out_dir = tmp_path / "rep"
    assert main(["report", "cli1", "--url", db, "--out", str(out_dir)]) == 0
    page = (out_dir / "report.html").read_text()
    assert "window.TL_EMBED" in page and "/static/" not in page  # the dashboard's views, inlined
    from storage import Storage

    with Storage.open(db) as st:  # each round stored its founders left (at least one per chunk)
        for r in st.list_rounds("cli1"):
            assert r.unique_ancestors is not None
            assert r.summary["chunks"] <= r.unique_ancestors <= r.summary["particles"]


@pytest.mark.slow
def test_demo_quick(ray_session: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--workdir", str(tmp_path / "d"), "--prior", "gmm-toy", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["queries"] == result["results"] == 12 and result["max_evaluations_per_key"] == 1
    assert Path(result["report"]).is_file() and (tmp_path / "d" / "demo.toml").is_file()
    # the saved config is a valid campaign file, and the demo can run again in the same folder
    assert main(["demo", "--workdir", str(tmp_path / "d"), "--prior", "gmm-toy", "--quick", "--json",
                 "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["campaign"] == "demo-2"


@pytest.mark.slow
def test_demo_quick_on_digit_images(ray_session: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--workdir", str(tmp_path / "d"), "--prior", "digits", "--quick", "--json",
                 "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["prior"] == "digits" and result["objective"] == "value"
    assert result["queries"] == result["results"] == 12 and result["max_evaluations_per_key"] == 1
    # prior samples are near the data, so the best is a log-odds (real 3s: up to 7.3), not a
    # large off-data penalty
    assert -30.0 < result["best"] < 15.0
    page = Path(result["report"]).read_text()
    embed = json.loads(page.split("window.TL_EMBED = ", 1)[1].split(";</script>", 1)[0])
    top = embed["bundle"]["top"]  # image designs: the report's gallery draws the queried digits
    assert len(top) == 12 and top[0]["shape"][-2:] == [8, 8]


@pytest.mark.slow
def test_manual_lab_ask_tell(ray_session: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv

    db = f"sqlite:///{tmp_path / 'manual.db'}"
    data: dict[str, Any] = {
        "name": "bench-lab", "prior": {"name": "gmm-toy"},
        "oracle": {"kind": "manual", "options": {"directory": str(tmp_path / "lab")}},
        "objectives": [{"name": "y"}], "sampler": {"num_steps": 8},
        "workers": {"count": 1, "particles_per_worker": 16, "cpus_per_worker": 0.5},
        "budget": {"q": 3, "total": 6}, "storage": {"url": db},
    }
    path = tmp_path / "manual.toml"
    path.write_text(dump_toml(parse_config(data)))
    assert main(["run", str(path), "-q"]) == 0  # generates round 0 and returns: a person measures
    capsys.readouterr()
    assert main(["ask", "bench-lab", "--url", db, "--json", "-q"]) == 0
    asked = json.loads(capsys.readouterr().out)
    assert asked["in_flight"] == 3
    rows = list(csv.DictReader(open(asked["pending_file"])))
    assert len(rows) == 3

    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({**r, "y": "not-a-number" if i == 1 else "1.5"})
    assert main(["tell", "bench-lab", str(bad), "--url", db]) == 2
    assert "line 3" in capsys.readouterr().err  # the bad row, by its line; nothing imported

    good = tmp_path / "good.csv"
    with open(good, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            x = np.array([float(r["x0"]), float(r["x1"])])
            w.writerow({**r, "y": repr(-float((x ** 2).sum()))})
    assert main(["tell", "bench-lab", str(good), "--url", db, "--json", "-q"]) == 0
    told = json.loads(capsys.readouterr().out)
    assert told["results"] == 3 and told["stored"] == 3 and len(told["imported"]["succeeded"]) == 3
    assert main(["ask", "bench-lab", "--url", db, "--json", "-q"]) == 0  # round 1: tilted by the GP
    asked = json.loads(capsys.readouterr().out)
    assert asked["rounds"] == 2 and asked["in_flight"] == 3


def test_manual_tell_stores_constraint_outputs(ray_session: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`tiltloop tell` records a constraint's output with the objectives (a result is feasible
    or not by its stored values)."""
    import csv

    from storage import Storage

    db = f"sqlite:///{tmp_path / 'manual.db'}"
    data: dict[str, Any] = {
        "name": "safe-lab", "prior": {"name": "gmm-toy"},
        "oracle": {"kind": "manual", "options": {"directory": str(tmp_path / "lab")}},
        "objectives": [{"name": "y"}], "constraints": [{"name": "tox", "op": "<=", "bound": 0.2}],
        "sampler": {"num_steps": 8},
        "workers": {"count": 1, "particles_per_worker": 16, "cpus_per_worker": 0.5},
        "budget": {"q": 2, "total": 4}, "storage": {"url": db},
    }
    path = tmp_path / "manual.toml"
    path.write_text(dump_toml(parse_config(data)))
    assert main(["run", str(path), "-q"]) == 0
    capsys.readouterr()
    assert main(["ask", "safe-lab", "--url", db, "--json", "-q"]) == 0
    rows = list(csv.DictReader(open(json.loads(capsys.readouterr().out)["pending_file"])))
    told = tmp_path / "told.csv"
    with open(told, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({**r, "y": "1.5", "tox": "0.1" if i == 0 else "0.9"})
    assert main(["tell", "safe-lab", str(told), "--url", db, "--json", "-q"]) == 0
    with Storage.open(db) as st:
        stored = sorted((q.values or {}).get("tox") for q in st.load_history("safe-lab").completed)
    assert stored == [0.1, 0.9]
    assert main(["status", "safe-lab", "--url", db]) == 0
    assert "1 feasible, 1 infeasible" in capsys.readouterr().out
