"""``tiltloop ask`` / ``tell`` on a pull campaign: the person at the shell is a lab client, going
through the pull API's storage path (claims, leases, a result stored once)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optimizer.campaign.config_io import dump_toml, parse_config
from optimizer.campaign.service import open_storage
from optimizer.cli import main


def _rows(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_pull_campaign_ask_tell_from_the_shell(ray_session: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'pull.db'}"
    data: dict[str, Any] = {
        "name": "shell-lab", "prior": {"name": "gmm-toy"}, "oracle": {"kind": "pull"},
        "objectives": [{"name": "y"}], "sampler": {"num_steps": 8},
        "workers": {"count": 1, "particles_per_worker": 16, "cpus_per_worker": 0.5},
        "budget": {"q": 3, "total": 6, "max_in_flight": 3}, "storage": {"url": db},
    }
    path = tmp_path / "pull.toml"
    path.write_text(dump_toml(parse_config(data)))
    assert main(["run", str(path), "-q"]) == 0  # round 0 recorded; its queries wait for a lab
    assert "wait for a lab to claim them" in capsys.readouterr().err
    out = tmp_path / "todo.csv"
    assert main(["ask", "shell-lab", "--url", db, "--out", str(out), "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["pending_file"] == str(out)
    rows = _rows(str(out))
    assert len(rows) == 3
    with open_storage(db, create=False) as st:  # claimed through the pull path: leased to the shell
        held = st.list_queries("shell-lab", statuses=("dispatched",))
        assert len(held) == 3 and all(q.lease_owner.startswith("cli:") for q in held)

    bad = _write(tmp_path / "bad.csv", [{**r, "y": "nan" if i == 1 else "1.5"}
                                        for i, r in enumerate(rows)])
    assert main(["tell", "shell-lab", str(bad), "--url", db]) == 2
    assert "line 3" in capsys.readouterr().err  # the bad row by its line; nothing stored
    stranger = _write(tmp_path / "stranger.csv", [{**rows[0], "key": "shell-lab:9:9", "y": "1"}])
    assert main(["tell", "shell-lab", str(stranger), "--url", db]) == 2
    assert "the designs this client holds in campaign 'shell-lab'" in capsys.readouterr().err

    good = []
    for i, r in enumerate(rows):
        x = np.array([float(r["x0"]), float(r["x1"])])
        good.append({**r, "y": "" if i == 2 else repr(-float((x ** 2).sum()))})
    good[1] = {**good[1], "y": "", "error": "sample spilled"}
    assert main(["tell", "shell-lab", str(_write(tmp_path / "good.csv", good)), "--url", db,
                 "--json", "-q"]) == 0
    told = json.loads(capsys.readouterr().out)
    assert (len(told["imported"]["succeeded"]), len(told["imported"]["failed"]),
            len(told["imported"]["still_pending"])) == (1, 1, 1)
    assert told["results"] == 1 and told["queries"]["failed"] == 1 and not told["refused"]
    # telling the same file again stores nothing twice (a report is idempotent)
    assert main(["tell", "shell-lab", str(tmp_path / "good.csv"), "--url", db, "--json",
                 "-q"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["results"] == 1 and not again["imported"]["succeeded"] and not again["refused"]
    # the row left blank is still held: the next ask lists it again
    assert main(["ask", "shell-lab", "--url", db, "--out", str(out), "-q"]) == 0
    assert rows[2]["key"] in {r["key"] for r in _rows(str(out))}
