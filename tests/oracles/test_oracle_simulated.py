"""Simulated oracles: BoTorch functions on the unit cube, the digit scorer, noise, failures, latency."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from botorch.test_functions.synthetic import Branin, Hartmann

from oracle_helpers import poll_until_done
from oracles.errors import OracleConfigError
from oracles.protocol import QueryRequest
from oracles.simulated import BoTorchFunctionOracle, DigitScorerOracle


def _value(oracle, design, key="k"):
    [result] = poll_until_done(oracle, oracle.submit([QueryRequest(key, np.asarray(design))]))
    return result


def test_branin_unit_cube_maps_to_bounds_and_is_negated():
    oracle = BoTorchFunctionOracle("branin")
    lb, ub = np.array([-5.0, 0.0]), np.array([10.0, 15.0])
    x_star = np.array(Branin._optimizers[0])
    u_star = (x_star - lb) / (ub - lb)
    assert _value(oracle, u_star).values["y"] == pytest.approx(-0.397887, abs=1e-5)
    u = np.array([0.3, 0.8])
    expected = Branin().evaluate_true(torch.tensor(lb + u * (ub - lb)).unsqueeze(0)).item()
    assert _value(oracle, u, "k2").values["y"] == pytest.approx(-expected)
    plain = BoTorchFunctionOracle("branin", negate=False)
    assert _value(plain, u).values["y"] == pytest.approx(expected)


def test_hartmann6_optimum_and_custom_bounds():
    oracle = BoTorchFunctionOracle("hartmann6")
    assert oracle.dim == 6 and oracle.optimal_value == pytest.approx(3.32237, abs=1e-4)
    x_star = np.array(Hartmann(dim=6)._optimizers[0])  # Hartmann's box is already [0, 1]^6
    assert _value(oracle, x_star).values["y"] == pytest.approx(3.32237, abs=1e-4)
    ackley = BoTorchFunctionOracle("ackley", dim=3, bounds=[(-1.0, 1.0)] * 3)
    assert _value(ackley, np.full(3, 0.5)).values["y"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("kwargs, message", [
    ({"function": "brainin"}, "unknown function 'brainin'; choose one of"),
    ({"function": "branin", "dim": 3}, "fixed dim 2, got dim=3"),
    ({"function": "hartmann", "dim": 5}, "function 'hartmann' with dim=5"),
    ({"function": "levy", "noise_std": -1.0}, "noise_std >= 0"),
])
def test_bad_function_config_is_named(kwargs, message):
    with pytest.raises(OracleConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        BoTorchFunctionOracle(**kwargs)


@pytest.mark.parametrize("design, reason", [
    (np.array([0.5, 1.2]), "must lie in the unit cube"),
    (np.array([0.5, 0.5, 0.5]), "must have shape (2,)"),
    (np.array([0.5, np.nan]), "NaN or inf"),
])
def test_bad_designs_fail_with_reason(design, reason):
    result = _value(BoTorchFunctionOracle("branin"), design)
    assert result.status == "failed" and reason in result.error


def test_noise_is_gaussian_seeded_per_key_and_reported_as_variance():
    noisy = BoTorchFunctionOracle("levy", dim=2, noise_std=0.5, seed=3)
    clean = BoTorchFunctionOracle("levy", dim=2)
    x = np.array([0.3, 0.6])
    keys = [f"k{i}" for i in range(400)]
    handles = noisy.submit([QueryRequest(k, x) for k in keys])
    results = noisy.poll(handles)
    eps = np.array([r.values["y"] for r in results]) - _value(clean, x).values["y"]
    # mean of 400 N(0, 0.25): sd 0.025, so 0.1 is a 4-sigma band; sd within 15%
    assert abs(eps.mean()) < 0.1 and 0.425 < eps.std() < 0.575
    assert results[0].noise == {"y": 0.25}
    again = BoTorchFunctionOracle("levy", dim=2, noise_std=0.5, seed=3)
    reversed_results = again.poll(again.submit([QueryRequest(k, x) for k in reversed(keys)]))
    assert [r.values for r in reversed(reversed_results)] == [r.values for r in results]
    other_seed = BoTorchFunctionOracle("levy", dim=2, noise_std=0.5, seed=4)
    assert _value(other_seed, x, "k0").values != results[0].values


def test_failure_rate_is_respected_and_counted():
    oracle = BoTorchFunctionOracle("branin", failure_rate=0.3, seed=1)
    handles = oracle.submit([QueryRequest(f"k{i}", np.full(2, 0.5)) for i in range(500)])
    results = oracle.poll(handles)
    rate = np.mean([r.status == "failed" for r in results])
    assert 0.24 < rate < 0.36  # binomial sd 0.02: a 3-sigma band
    assert all("simulated failure" in r.error for r in results if r.status == "failed")
    oracle.poll(handles)
    assert set(oracle.evaluations.values()) == {1}  # polling again never re-evaluates


def test_latency_keeps_jobs_running_and_cancel_stops_them():
    oracle = BoTorchFunctionOracle("branin", latency_s=30.0)
    handles = oracle.submit([QueryRequest("a", np.full(2, 0.5)), QueryRequest("b", np.full(2, 0.5))])
    assert [r.status for r in oracle.poll(handles)] == ["running", "running"]
    oracle.cancel(handles[:1])
    assert [r.status for r in oracle.poll(handles)] == ["cancelled", "running"]
    assert oracle.evaluations["a"] == 0


def test_digit_scorer_prefers_the_target_digit():
    oracle = DigitScorerOracle(target_digit=3, seed=0)
    threes = [oracle.score(oracle.check_design(oracle.example_image(3, i)))["p_target"]
              for i in range(20)]
    others = [oracle.score(oracle.check_design(oracle.example_image(d, 0)))["p_target"]
              for d in (0, 1, 2, 4, 5, 6, 7, 8, 9)]
    assert np.mean(threes) > 0.8 and max(others) < 0.5
    result = _value(oracle, oracle.example_image(3).reshape(1, 8, 8))
    assert result.status == "succeeded" and result.values["p_target"] > 0.5
    bad = _value(oracle, np.zeros((7, 7)), "bad")
    assert bad.status == "failed" and "8x8 image" in bad.error
    log_oracle = DigitScorerOracle(target_digit=3, log_prob=True, seed=0)
    lp = log_oracle.score(log_oracle.check_design(oracle.example_image(3)))["p_target"]
    assert lp == pytest.approx(np.log(threes[0]), rel=1e-6)


def test_digit_scorer_log_odds_and_off_data_penalty():
    plain = DigitScorerOracle(target_digit=3, output="log_odds", seed=0)
    prob = DigitScorerOracle(target_digit=3, seed=0)
    image = prob.example_image(3, 2)
    p = prob.score(prob.check_design(image))["p_target"]
    assert plain.score(plain.check_design(image))["p_target"] == pytest.approx(
        np.log(p) - np.log1p(-p), rel=1e-6)
    penalized = DigitScorerOracle(target_digit=3, output="log_odds", off_data_penalty=25.0, seed=0)
    lab = DigitScorerOracle.lab(3, seed=0)  # the demo's and the benchmark's: signed pixels
    assert lab.score(lab.check_design(2.0 * image - 1.0))["p_target"] == pytest.approx(
        penalized.score(image)["p_target"], rel=1e-9)
    # a real digit is at distance 0 from the data: no penalty; the radius is the 95% quantile of
    # the real digits' leave-one-out distances (about 1.4 pixel units)
    assert penalized.data_distance(image.reshape(1, 64))[0] == pytest.approx(0.0, abs=1e-6)
    assert 1.0 < penalized.off_data_radius < 2.0
    assert penalized.score(image)["p_target"] == pytest.approx(
        plain.score(image)["p_target"], rel=1e-9)
    # uniform noise is ~3 units from every digit: penalized by 25 (d - r)^2, exactly
    noise = np.random.default_rng(0).uniform(0, 1, 64)
    d = penalized.data_distance(noise[None])[0]
    expected = plain.score(noise)["p_target"] - 25.0 * (d - penalized.off_data_radius) ** 2
    assert d > penalized.off_data_radius + 1.0
    assert penalized.score(noise)["p_target"] == pytest.approx(expected, rel=1e-9)
    # the batched values agree with one-at-a-time scores
    batch = np.stack([image.reshape(64), noise])
    np.testing.assert_allclose(penalized.values(batch),
                               [penalized.score(r)["p_target"] for r in batch], rtol=1e-12)
    with pytest.raises(OracleConfigError, match="output must be one of"):
        DigitScorerOracle(output="logit")
    with pytest.raises(OracleConfigError, match="log_prob=True contradicts"):
        DigitScorerOracle(output="log_odds", log_prob=True)
    with pytest.raises(OracleConfigError, match="off_data_penalty must be >= 0"):
        DigitScorerOracle(off_data_penalty=-1.0)
    with pytest.raises(OracleConfigError, match="off_data_radius must be > 0"):
        DigitScorerOracle(off_data_penalty=1.0, off_data_radius=float("nan"))
    # an explicit radius replaces the data's quantile
    assert DigitScorerOracle(off_data_penalty=1.0, off_data_radius=0.5, seed=0).off_data_radius == 0.5


def test_digit_scorer_reads_signed_pixels_of_the_bundled_prior():
    unit = DigitScorerOracle(target_digit=3, seed=0)
    signed = DigitScorerOracle(target_digit=3, pixel_range="signed", seed=0)
    image = unit.example_image(3, 1)
    p_unit = unit.score(unit.check_design(image))["p_target"]
    # the same image in the prior's [-1, 1] space scores the same once mapped back
    assert signed.score(signed.check_design(2.0 * image - 1.0))["p_target"] == pytest.approx(p_unit)
    # read as [0, 1] pixels, a [-1, 1] image is mostly clipped to black: a different score
    assert unit.score(unit.check_design(2.0 * image - 1.0))["p_target"] != pytest.approx(p_unit)
    with pytest.raises(OracleConfigError, match="pixel_range must be 'unit'"):
        DigitScorerOracle(pixel_range="0-16")
