"""``python -m oracles.labsim``: bad options exit 2 with one clear message; images travel as JSON."""
from __future__ import annotations

import subprocess
import sys

import pytest

from oracle_helpers import REPO_ROOT, poll_until_done, subprocess_env
from oracles.http import HttpOracle
from oracles.labsim import LabSimulator
from oracles.protocol import QueryRequest
from oracles.simulated import DigitScorerOracle


@pytest.mark.parametrize("args, message", [
    (["--fault", "bogus=0.1"], "unknown fault 'bogus'"),
    (["--fault", "500"], "must look like KIND=RATE"),
    (["--fault-script", "500,explode"], "fault script entry 'explode'"),
    (["--fault", "500=0.7", "--fault", "drop=0.7"], "must sum to <= 1"),
    (["--function", "branin", "--pixel-range", "signed"], "only apply to --function digits"),
    # these two load the simulated functions (torch, botorch) in the child: ~10 s each
    pytest.param(["--function", "manifold", "--dim", "4"], "dim=4 is too small", marks=pytest.mark.slow),
    pytest.param(["--function", "nope"], "unknown function 'nope'", marks=pytest.mark.slow),
])
def test_bad_fault_options_exit_2_with_a_message(args, message):
    proc = subprocess.run([sys.executable, "-m", "oracles.labsim", "--port", "0", *args],
                          capture_output=True, text=True, env=subprocess_env(), cwd=REPO_ROOT,
                          timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and proc.stdout == ""


def test_digit_images_over_http():
    scorer = DigitScorerOracle(target_digit=7, objective="p7", seed=0)
    with LabSimulator(scorer) as lab:
        client = HttpOracle(lab.url, objectives=("p7",))
        seven, one = scorer.example_image(7), scorer.example_image(1)
        handles = client.submit([QueryRequest("seven", seven), QueryRequest("one", one)])
        results = poll_until_done(client, handles)
        assert results[0].values["p7"] > 0.5 > results[1].values["p7"]
        assert results[0].values["p7"] == pytest.approx(scorer.score(scorer.check_design(seven))["p7"])
        client.close()
