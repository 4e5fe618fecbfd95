"""``tiltloop campaign pause|resume|cancel|delete|config`` and an idempotent ``tiltloop run``, on
SQLite and Postgres, against the lab simulator over HTTP (tiny 2-d prior, tiny budgets).

A round's outbox (queries committed, nothing sent) is produced by stopping the driver at its
``outbox`` crash point with an exception instead of a SIGKILL (the pytest process survives).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import optimizer.campaign.driver as driver_mod
from optimizer.campaign.config_io import dump_toml
from optimizer.cli import main
from storage import Storage

pytestmark = pytest.mark.slow  # whole campaigns through the CLI: 13-110 s each on 2 cores


class _Stop(Exception):
    """Raised at the driver's crash point: the process 'dies' right after the outbox write."""


def _stop_at(monkeypatch: pytest.MonkeyPatch, point: str, action: Any = None) -> None:
    def hook(name: str) -> None:
        if name == point:
            if action is None:
                raise _Stop(name)
            action()
    monkeypatch.setattr(driver_mod, "crash_point", hook)


def _write(tmp_path: Path, make_config, name: str, prior: str, lab_url: str, db_url: str,
           **sections: Any) -> Path:
    cfg = make_config(name, prior, lab_url, db_url,
                      workers={"count": 1, "particles_per_worker": 8, "cpus_per_worker": 0.5},
                      sampler={"alpha": 0.5, "num_steps": 4},
                      budget={"q": 2, "max_in_flight": 2, "total": 4, "poll_interval_s": 0.05},
                      **sections)
    path = tmp_path / f"{name}.toml"
    path.write_text(dump_toml(cfg))
    return path


def _counts(db_url: str, name: str) -> dict[str, int]:
    with Storage.open(db_url) as st:
        return st.query_counts(name)


def test_pause_resume_idempotent_run_config_versions_delete(
        ray_session: str, tiny_prior_path: str, lab, db_url: str, make_config, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    name = "ops"
    path = _write(tmp_path, make_config, name, tiny_prior_path, lab.url, db_url)

    # round 0 committed (2 queries in the outbox), nothing sent
    _stop_at(monkeypatch, "outbox")
    with pytest.raises(_Stop):
        main(["run", str(path), "-q"])
    monkeypatch.undo()
    assert _counts(db_url, name)["pending"] == 2 and lab.stats()["requests"] == 0

    # delete refuses while queries are in flight (without --force), even with --yes
    assert main(["campaign", "delete", name, "--url", db_url, "--yes"]) == 2
    assert "in flight" in capsys.readouterr().err
    assert _counts(db_url, name)["pending"] == 2

    # pause: `run` of the same file does not drive a paused campaign; nothing reaches the lab
    assert main(["campaign", "pause", name, "--url", db_url, "--reason", "lab maintenance"]) == 0
    capsys.readouterr()
    assert main(["run", str(path), "-q"]) == 3
    assert "lab maintenance" in capsys.readouterr().err
    assert lab.stats()["requests"] == 0 and _counts(db_url, name)["pending"] == 2
    assert main(["status", name, "--url", db_url]) == 0
    out = capsys.readouterr().out
    assert "paused" in out and "lab maintenance" in out

    # campaign resume marks it active; `resume` drives it: the outbox first, then round 1
    assert main(["campaign", "resume", name, "--url", db_url]) == 0
    assert "active again" in capsys.readouterr().out
    with Storage.open(db_url) as st:
        assert st.load_campaign(name).status == "active"
        outbox = {q.key for q in st.list_queries(name, statuses=("pending",))}
    assert main(["resume", name, "--url", db_url, "-q"]) == 0
    capsys.readouterr()
    counts = _counts(db_url, name)
    assert counts["succeeded"] == 4 and sum(counts.values()) == 4, counts
    evaluations = lab.store.evaluations
    assert outbox <= set(evaluations) and max(evaluations.values()) == 1

    # idempotent run: the same file again reports the completed campaign, writes nothing
    requests = lab.stats()["requests"]
    assert main(["run", str(path), "--json", "-q"]) == 0
    assert '"completed"' in capsys.readouterr().out
    assert _counts(db_url, name) == counts and lab.stats()["requests"] == requests
    with Storage.open(db_url) as st:
        assert [c.name for c in st.list_campaigns()] == [name] and len(st.list_rounds(name)) == 2

    # an edited file: exit 2 naming the field that differs
    edited = tmp_path / "edited.toml"
    edited.write_text(path.read_text().replace("alpha = 0.5", "alpha = 0.25"))
    assert edited.read_text() != path.read_text()
    assert main(["run", str(edited)]) == 2
    err = capsys.readouterr().err
    assert "sampler.alpha" in err and "already exists with a different config" in err, err
    assert _counts(db_url, name) == counts

    # config versions: --set stores version 2 (budget raised: the campaign reopens)
    assert main(["campaign", "config", name, "--url", db_url, "--set", "sampler.alpha=0.05",
                 "--set", "budget.total=6", "--note", "colder"]) == 0
    assert "config version 2 stored" in capsys.readouterr().out
    assert main(["campaign", "config", name, "--url", db_url, "--history"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("version ")]
    assert len(lines) == 2 and lines[0].startswith("version 1") and "colder" in lines[1]
    assert main(["resume", name, "--url", db_url, "-q"]) == 0
    capsys.readouterr()
    with Storage.open(db_url) as st:
        rounds = st.list_rounds(name)
        assert [r.config_version for r in rounds] == [1, 1, 2]
        assert rounds[2].alpha == pytest.approx(0.05)
        assert st.current_config_version(name) == 2
    assert _counts(db_url, name)["succeeded"] == 6

    # delete asks: without --yes and without a terminal, exit 2 and nothing deleted
    assert main(["campaign", "delete", name, "--url", db_url]) == 2
    assert "--yes" in capsys.readouterr().err
    assert _counts(db_url, name)["succeeded"] == 6
    assert main(["campaign", "delete", name, "--url", db_url, "--yes"]) == 0
    capsys.readouterr()
    with Storage.open(db_url) as st:
        assert st.list_campaigns() == []
    assert main(["status", name, "--url", db_url]) == 2


def test_cancel_outbox_never_reaches_the_lab_and_force_delete(
        ray_session: str, tiny_prior_path: str, lab, db_url: str, make_config, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    name = "doomed"
    path = _write(tmp_path, make_config, name, tiny_prior_path, lab.url, db_url)
    _stop_at(monkeypatch, "outbox")
    with pytest.raises(_Stop):
        main(["run", str(path), "-q"])
    monkeypatch.undo()
    assert _counts(db_url, name)["pending"] == 2

    assert main(["campaign", "cancel", name, "--url", db_url]) == 2  # no terminal, no --yes
    assert "--yes" in capsys.readouterr().err
    assert _counts(db_url, name)["pending"] == 2
    assert main(["campaign", "cancel", name, "--url", db_url, "--yes"]) == 0
    assert "2 queued queries never sent" in capsys.readouterr().out
    counts = _counts(db_url, name)
    assert counts["cancelled"] == 2 and counts["pending"] == 0, counts

    # a cancelled campaign neither runs nor resumes; the lab never saw a job request
    assert main(["run", str(path), "-q"]) == 2
    assert "cancelled" in capsys.readouterr().err
    assert main(["resume", name, "--url", db_url, "-q"]) == 2
    assert "cancelled" in capsys.readouterr().err
    assert lab.stats()["requests"] == 0 and lab.stats()["jobs"] == 0
    assert main(["campaign", "delete", name, "--url", db_url, "--yes"]) == 0
    capsys.readouterr()

    # --force: delete with queries in flight
    path2 = _write(tmp_path, make_config, "inflight", tiny_prior_path, lab.url, db_url)
    _stop_at(monkeypatch, "outbox")
    with pytest.raises(_Stop):
        main(["run", str(path2), "-q"])
    monkeypatch.undo()
    assert main(["campaign", "delete", "inflight", "--url", db_url, "--yes"]) == 2
    capsys.readouterr()
    assert main(["campaign", "delete", "inflight", "--url", db_url, "--yes", "--force"]) == 0
    with Storage.open(db_url) as st:
        assert st.list_campaigns() == []


def test_running_driver_notices_a_pause(ray_session: str, tiny_prior_path: str, lab, db_url: str,
                                        make_config, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`tiltloop campaign pause` from another shell while round 0 is being written: the driver
    stops at its next pass (no round 1), exit 3 with the operator's reason."""
    name = "noticed"
    path = _write(tmp_path, make_config, name, tiny_prior_path, lab.url, db_url)
    paused: list[int] = []

    def other_shell() -> None:
        if not paused:
            paused.append(main(["campaign", "pause", name, "--url", db_url, "--reason", "stop now"]))
    _stop_at(monkeypatch, "outbox", other_shell)
    assert main(["run", str(path), "-q"]) == 3
    monkeypatch.undo()
    assert paused == [0]
    assert "stop now" in capsys.readouterr().err
    with Storage.open(db_url) as st:
        assert st.load_campaign(name).status == "paused"
        assert len(st.list_rounds(name)) == 1  # no new round after the pause
        assert sum(st.query_counts(name).values()) == 2
    assert lab.stats()["jobs"] <= 2
