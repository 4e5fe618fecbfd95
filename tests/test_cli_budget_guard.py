"""Budget guard end to end through ``tiltloop run``: a README-style campaign (bundled ``manifold``
prior, 16-d designs) against a lab simulator over HTTP that serves a 2-d function (branin), so
every query is rejected with HTTP 422.

(a) the lab describes itself on ``GET /health``: preflight refuses (exit 2, nothing written);
(b) the lab does not (``python -m oracles.labsim --no-describe``): the campaign starts, the guard
    pauses it after one guard's worth of queries (exit 3, grouped cause on stderr), ``status``
    shows it, and ``resume`` against a correct lab continues it to completion.

Plus unit tests of :class:`optimizer.campaign.guards.BudgetGuard`.
"""
from __future__ import annotations

import json
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from optimizer.campaign.config import BudgetConfig
from optimizer.campaign.guards import BudgetGuard
from optimizer.cli import main
from oracles.labsim import LabSimulator
from oracles.labsim.server import LabSimulatorProcess
from storage import Storage

GUARD = 2  # budget.max_consecutive_failures
Q = 2      # budget.q = budget.max_in_flight


def _toml(tmp_path: Path, lab_url: str, db: str, name: str) -> Path:
    """The README's campaign file, made tiny (16-d manifold prior, objective ``value``)."""
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""\
name = "{name}"
seed = 0
[prior]
name = "manifold"
[oracle]
kind = "http"
options = {{ base_url = "{lab_url}", timeout_s = 10.0 }}
[[objectives]]
name = "value"
direction = "maximize"
[sampler]
alpha = [0.5, 0.2, 0.1]
num_steps = 4
[workers]
count = 1
particles_per_worker = 8
cpus_per_worker = 0.5
[budget]
q = {Q}
max_in_flight = {Q}
total = 4
max_consecutive_failures = {GUARD}
poll_interval_s = 0.05
[storage]
url = "{db}"
""")
    return path


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_shape_mismatch_refused_by_preflight_when_the_lab_describes_itself(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from oracles.simulated.botorch_functions import BoTorchFunctionOracle

    db = f"sqlite:///{tmp_path / 'guard.db'}"
    with LabSimulator(BoTorchFunctionOracle("branin")) as lab:
        assert _get(f"{lab.url}/health")["design_shape"] == [2]
        path = _toml(tmp_path, lab.url, db, "wrong-lab")
        assert main(["run", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"the oracle at {lab.url}" in err, err
        assert "(2,)" in err and "(16,)" in err, err  # both shapes named
        assert lab.stats()["requests"] == 0  # not one job request reached the lab
    assert not (tmp_path / "guard.db").exists()  # no campaign row (no database at all)


@pytest.mark.slow
def test_guard_pauses_then_resume_against_a_correct_lab(
        ray_session: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from oracles.simulated.manifold import ManifoldOracle, ManifoldProblem

    db = f"sqlite:///{tmp_path / 'guard.db'}"
    name = "guarded"
    with LabSimulatorProcess(["--function", "branin", "--no-describe"]) as wrong:
        health = _get(f"{wrong.url}/health")
        assert health.get("status") == "ok"
        assert "design_shape" not in health and "objectives" not in health
        path = _toml(tmp_path, wrong.url, db, name)
        assert main(["run", str(path)]) == 3
        err = capsys.readouterr().err
        assert f"campaign {name} paused" in err, err
        assert "HTTP 422" in err and "design must have shape" in err, err
        assert f"tiltloop resume {name}" in err
        stats = _get(f"{wrong.url}/stats")
    # the lab saw one guard's worth of job requests, not the whole budget; none evaluated
    assert 1 <= stats["requests"] <= max(GUARD, Q), stats
    assert stats["jobs"] == 0 and not stats["evaluations"], stats

    with Storage.open(db) as st:
        assert st.load_campaign(name).status == "paused"
        counts = st.query_counts(name)
        assert counts["failed"] == stats["requests"] and counts["succeeded"] == 0, counts
    assert main(["status", name, "--url", db]) == 0
    out = capsys.readouterr().out
    assert "paused" in out and "HTTP 422" in out and "design must have shape" in out, out

    with LabSimulator(ManifoldOracle(ManifoldProblem())) as right:
        assert main(["campaign", "config", name, "--url", db,
                     "--set", f"oracle.base_url={right.url}"]) == 0
        capsys.readouterr()
        assert main(["resume", name, "--url", db, "--json", "-q"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["status"] == "completed" and status["results"] >= 1, status
        assert right.stats()["jobs"] == status["results"]
    with Storage.open(db) as st:
        assert st.load_campaign(name).status == "completed"


def _q(key: str, status: str, t: int, round_index: int = 0) -> SimpleNamespace:
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return SimpleNamespace(key=key, status=status, round_index=round_index,
                           finished_at=base + timedelta(seconds=t))


def test_guard_consecutive_rule_resets_on_success() -> None:
    guard = BudgetGuard(BudgetConfig(q=4, total=100, max_consecutive_failures=3,
                                     max_failure_fraction=1.0))
    sizes = {0: 100}
    assert guard.observe([_q("a", "failed", 1), _q("b", "failed", 2)], sizes) is None
    assert guard.observe([_q("c", "succeeded", 3)], sizes) is None  # resets the run
    assert guard.observe([_q("d", "failed", 4), _q("e", "failed", 5)], sizes) is None
    trip = guard.observe([_q("f", "failed", 6)], sizes)
    assert trip is not None and trip.rule == "consecutive" and trip.keys == ("d", "e", "f")


def test_guard_orders_by_finished_at_not_by_arrival() -> None:
    guard = BudgetGuard(BudgetConfig(q=4, total=100, max_consecutive_failures=2,
                                     max_failure_fraction=1.0))
    # arrival order F S F would never give two in a row; by finished_at it is S F F -> trip
    trip = guard.observe([_q("x", "failed", 2), _q("s", "succeeded", 1), _q("y", "failed", 3)],
                         {0: 100})
    assert trip is not None and trip.rule == "consecutive" and trip.keys == ("x", "y")
    # and the other way round: F F S by finished_at ends with a success (arrival F S F)
    guard = BudgetGuard(BudgetConfig(q=4, total=100, max_consecutive_failures=3,
                                     max_failure_fraction=1.0))
    assert guard.observe([_q("x", "failed", 1), _q("s", "succeeded", 3), _q("y", "failed", 2)],
                         {0: 100}) is None
    assert guard.consecutive == []


def test_guard_fraction_rule_per_round() -> None:
    guard = BudgetGuard(BudgetConfig(q=4, total=100, max_consecutive_failures=50,
                                     max_failure_fraction=0.5))
    sizes = {0: 4, 1: 4}
    # 2 of 4 is not MORE than half
    assert guard.observe([_q("a", "failed", 1, 0), _q("b", "succeeded", 2, 0),
                          _q("c", "failed", 3, 0)], sizes) is None
    # failures of another round do not add up with round 0's
    assert guard.observe([_q("d", "failed", 4, 1), _q("e", "succeeded", 5, 1)], sizes) is None
    trip = guard.observe([_q("f", "failed", 6, 0)], sizes)  # 3 of round 0's 4
    assert trip is not None and trip.rule == "fraction"
    assert "round 0" in trip.message and "3 of" in trip.message
