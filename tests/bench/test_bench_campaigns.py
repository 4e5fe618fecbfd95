"""Fast versions of the campaign benchmark: problems, priors and every baseline produce
well-formed rows (one seed, tiny budget); goal lines and the CLI on synthetic / tiny runs."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.campaign_methods import METHODS, MethodSettings, ax_available  # noqa: E402
from bench.campaign_problems import load_problem, mean_pairwise_distance  # noqa: E402
from bench.campaigns import RunResult, goals, main, run_campaign, summarize  # noqa: E402

TINY = MethodSettings(num_particles=32, num_steps=6, raw_restarts=2, raw_samples=32)
SURROGATED = {"tiltloop", "tiltloop-new", "tiltloop-auto", "das-groups", "prior-screened",
              "botorch-raw"}


@pytest.fixture(scope="module")
def problems():
    return {name: load_problem(name) for name in ("gmm-toy", "manifold", "digits")}


def _check_row(r: RunResult, problem, method: str, rounds: int, q: int) -> None:
    n = rounds * q
    assert r.values.shape == (n,) and np.isfinite(r.values).all()
    assert r.on_support.shape == (n,) and r.on_support.dtype == bool
    assert r.diversity.shape == (rounds,) and (r.diversity > 0).all()
    assert (np.diff(r.best_so_far) >= 0).all() and r.best_so_far[-1] == r.values.max()
    if problem.optimum is not None:
        assert r.values.max() <= problem.optimum + 1e-6
    if method in SURROGATED:  # a surrogate prediction for every design picked after round 0
        assert len(r.gaps) == (rounds - 1) * q and np.isfinite(r.gaps).all()
    else:
        assert len(r.gaps) == 0


@pytest.mark.slow
def test_problems_oracles_and_supports(problems):
    man = problems["manifold"]
    from oracles.simulated.manifold import ManifoldProblem

    x_star = ManifoldProblem().optimizer[None]
    assert man.value(x_star).item() == pytest.approx(3.32237, abs=1e-4)
    assert bool(man.on_support(x_star)[0])
    assert not bool(man.on_support(x_star + 0.5)[0])  # far off the manifold: invalid
    for name, p in problems.items():
        hist = p.historical[:200]
        assert p.on_support(hist.float()).float().mean() >= 0.9, name  # the data is valid
        lo, hi = p.bounds()
        assert lo.shape == hi.shape == (int(np.prod(p.design_shape)),) and (hi > lo).all()
        v = p.value(hist[:16])
        assert v.shape == (16,) and torch.isfinite(v).all()
    # digits: a real 3 scores higher than a real 0 (log-odds of 3), blank corners get the
    # design range, and the box corner the linear scorer prefers is penalized below any real 3
    dig = problems["digits"]
    from sklearn.datasets import load_digits

    data = load_digits()
    three = torch.from_numpy(data.images[data.target == 3][:1]).double()[:, None] / 8 - 1
    zero = torch.from_numpy(data.images[data.target == 0][:1]).double()[:, None] / 8 - 1
    assert dig.value(three).item() > 2.0 > -2.0 > dig.value(zero).item()
    assert dig.bounds()[:, 0].tolist() == [-1.0, 1.0]
    from oracles.simulated.digits import DigitScorerOracle

    scorer = DigitScorerOracle(3, output="log_odds", seed=0)
    w = scorer._coef[3] - np.delete(scorer._coef, 3, 0).mean(0)
    corner = torch.from_numpy(np.sign(w)).reshape(1, 1, 8, 8)  # the linear scorer's favourite
    # without the penalty it outscores every real digit (best real 3: 7.3)
    assert scorer.values(((corner.numpy() + 1) / 2).reshape(1, 64))[0] > 10
    assert dig.value(corner).item() < -50


def test_pairwise_distance():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert mean_pairwise_distance(x) == pytest.approx((5 + 5 + 0) / 3)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "ax"])
def test_every_method_on_vector_problems(problems, method):
    for name in ("gmm-toy", "manifold"):
        r = run_campaign(problems[name], method, 0, rounds=2, q=4, settings=TINY)
        _check_row(r, problems[name], method, 2, 4)


def test_prior_samples_are_on_the_support(problems):
    # with enough steps the bundled priors' draws satisfy their support rule (6 steps do not)
    settings = TINY.model_copy(update={"num_steps": 30})
    for name in ("gmm-toy", "manifold"):
        r = run_campaign(problems[name], "random", 0, rounds=2, q=8, settings=settings)
        assert r.on_support.mean() >= 0.85, (name, r.on_support)


@pytest.mark.parametrize("method", ["tiltloop", "das-groups", "random", "botorch-raw"])
def test_digits_methods(problems, method):
    r = run_campaign(problems["digits"], method, 0, rounds=2, q=3, settings=TINY)
    _check_row(r, problems["digits"], method, 2, 3)


@pytest.mark.skipif(not ax_available(), reason="Ax not installed (pip install -e '.[bench]')")
def test_ax_baseline(problems):
    r = run_campaign(problems["gmm-toy"], "ax", 0, rounds=2, q=4, settings=TINY)
    _check_row(r, problems["gmm-toy"], "ax", 2, 4)


def _fake(method: str, seed: int, values: list[float], support: float = 1.0) -> RunResult:
    v = np.asarray(values, dtype=float)
    return RunResult("toy", method, seed, v, np.arange(len(v)) < support * len(v),
                     np.ones(2), np.zeros(0), 1.0)


def test_goal_lines_pass_and_fail():
    good = [_fake("tiltloop", s, [0, 5, 6, 7]) for s in range(2)]
    raw = [_fake("botorch-raw", s, [0, 1, 2, 4]) for s in range(2)]
    rnd = [_fake("random", s, [0, 1, 1, 1]) for s in range(2)]
    lines = goals(summarize(good + raw + rnd))
    assert [ln.split()[0] for ln in lines] == ["PASS", "PASS", "PASS"], lines
    assert "after 2 queries" in lines[1]
    bad = [_fake("tiltloop", s, [0, 1, 3, 5], support=0.5) for s in range(2)]
    lines = goals(summarize(bad + raw + [_fake("random", s, [0, 0, 0, 6]) for s in range(2)]))
    assert [ln.split()[0] for ln in lines] == ["FAIL", "FAIL", "FAIL"], lines
    assert "(not: random)" in lines[0] and "50.0%" in lines[2]


def test_summary_mean_and_standard_error():
    rs = [_fake("random", 0, [1, 2]), _fake("random", 1, [3, 4])]
    s = summarize(rs)[("toy", "random")]
    assert s["final"] == pytest.approx((3.0, 1.0))  # finals 2 and 4: mean 3, s.e. 2/sqrt(2)/sqrt(2)
    assert s["curve"].tolist() == [2.0, 3.0]


def test_cli_writes_table_and_plot(tmp_path, capsys):
    main(["--problems", "gmm-toy", "--methods", "tiltloop,random", "--rounds", "2", "--q", "3",
          "--seeds", "2", "--particles", "16", "--steps", "4", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| tiltloop |" in out and "| random |" in out and "Mahalanobis" in out
    assert (tmp_path / "gmm-toy_best_so_far.png").stat().st_size > 1000
    assert "tiltloop final best" in (tmp_path / "table.md").read_text()
    saved = json.loads((tmp_path / "runs.json").read_text())
    assert saved["complete"] is True
    runs = saved["runs"]
    assert sorted((r["method"], r["seed"]) for r in runs) == [
        ("random", 0), ("random", 1), ("tiltloop", 0), ("tiltloop", 1)]
    assert all(len(r["values"]) == 6 for r in runs)
    main(["--from-runs", str(tmp_path / "runs.json"), "--out", str(tmp_path / "again")])
    again = capsys.readouterr().out
    expected = out.split("| method")[1].replace(str(tmp_path), str(tmp_path / "again"))
    assert again.split("| method")[1] == expected
    # runs of other problems, saved by a parallel process, are reported together
    main(["--problems", "manifold", "--methods", "random", "--rounds", "1", "--q", "2",
          "--seeds", "1", "--out", str(tmp_path / "m")])
    capsys.readouterr()
    main(["--from-runs", str(tmp_path / "runs.json"), str(tmp_path / "m" / "runs.json"),
          "--out", str(tmp_path / "both")])
    both = capsys.readouterr().out
    assert "### gmm-toy" in both and "### manifold" in both
    with pytest.raises(SystemExit, match="same \\(problem, method, seed\\) twice"):
        main(["--from-runs", str(tmp_path / "runs.json"), str(tmp_path / "runs.json")])
    with pytest.raises(SystemExit, match="unknown method 'nope'"):
        main(["--methods", "nope", "--out", str(tmp_path)])


def test_unknown_problem_names_the_choices():
    with pytest.raises(ValueError, match="unknown problem 'cube'.*manifold, digits, gmm-toy"):
        load_problem("cube")
