"""The multi-objective bench's smallest setting: both problems, every method, one seed and a
tiny budget produce a finite, non-decreasing hypervolume per query and the printed table."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.campaign_methods import MethodSettings, ax_available  # noqa: E402
from bench.multi_objective import (  # noqa: E402
    load_mo_problem, main, run_mo_campaign, table)

TINY = MethodSettings(num_particles=16, num_steps=4)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["manifold-mo", "digits-mo"])
def test_problems_have_two_objectives_and_a_reference(name: str) -> None:
    p = load_mo_problem(name)
    v = p.base.value(p.base.historical[:32])
    assert v.shape == (32, 2) and torch.isfinite(v).all()
    assert p.reference.shape == (2,)
    # the lower-quartile reference: most real designs beat it in each objective
    above = (v.numpy() > p.reference).mean(axis=0)
    assert (above > 0.6).all() and (above < 0.9).all()


def test_smallest_setting_runs_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    p = load_mo_problem("manifold-mo")
    methods = ["tiltloop", "random"] + (["ax"] if ax_available() else [])
    runs = [run_mo_campaign(p, m, 0, rounds=2, q=2, settings=TINY) for m in methods]
    for r in runs:
        assert r.values.shape == (4, 2) and np.isfinite(r.values).all()
        assert r.hypervolume.shape == (4,) and (np.diff(r.hypervolume) >= -1e-12).all()
        assert r.cpu_seconds > 0
    text = table(runs, 2, 2)
    assert "manifold-mo: hypervolume after N queries" in text and "N=4" in text
    assert all(m in text for m in methods)
    assert main(["--problems", "digits-mo", "--methods", "tiltloop,random", "--seeds", "1",
                 "--rounds", "2", "--q", "2", "--particles", "16", "--steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "digits-mo: hypervolume after N queries" in out and "process CPU time" in out
