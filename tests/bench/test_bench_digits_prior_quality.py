"""bench/digits_prior_quality.py runs and prints its figures for real digits and prior samples."""
from __future__ import annotations

import re

from bench.digits_prior_quality import main


def test_prints_confidence_fractions_for_data_and_prior(capsys):
    assert main(["--samples", "16", "--seeds", "1", "--steps", "5,8"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("real held-out digits (359):") and len(lines) == 3
    assert lines[1].startswith("digits  5 steps, 16 samples:") and lines[2].startswith("digits  8 steps")
    for line in lines:
        a, b, tv = (float(v) for v in re.findall(r"(?:>=0\.[59]|TV) ([0-9.]+)", line))
        assert 0 <= a <= b <= 1 and 0 <= tv <= 1  # confidence >= 0.9 implies >= 0.5
