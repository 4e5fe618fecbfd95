"""``tiltloop run`` on hundreds of bad configs derived from one good one (``bench/bad_config_cases.py``):
each exits 2 with one ``tiltloop run:`` message naming the file and the dotted field, prints no
traceback, writes no campaign row and never reaches Ray.

Cases marked xfail(strict=True) are known bugs (see each reason); fixing one makes its case pass,
which fails the run until the mark is removed.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bad_config_cases import (BadCase, ReachedRay, bad_cases, campaign_rows,  # noqa: E402
                                    problems, refuse_ray)
from optimizer.campaign import service  # noqa: E402
from optimizer.campaign.config_io import load_config  # noqa: E402
from optimizer.cli import main  # noqa: E402

CASES = bad_cases()

_ROW_THEN_RAY = ("passes validation and preflight, so run_campaign writes the campaign row and only "
                 "then starts Ray (which would run with it / fail); the config should refuse it")
#: id -> why it fails today (strict: the mark must go once the bug is fixed).
KNOWN_BUGS: dict[str, str] = {}


def _param(case: BadCase):  # type: ignore[no-untyped-def]
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[case.id])] if case.id in KNOWN_BUGS else []
    return pytest.param(case, id=case.id, marks=marks)


def test_cases_cover_the_brief() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 300 and len(set(ids)) == len(ids)
    assert set(KNOWN_BUGS) <= set(ids), set(KNOWN_BUGS) - set(ids)
    cats = {c.category for c in CASES}
    assert {"wrong-type", "unknown-key", "bad-choice", "out-of-range", "empty", "bad-name",
            "missing", "syntax", "cross"} <= cats
    fields = {c.field for c in CASES}
    assert {"sampler.ess_threshold", "oracle.retry.max_attempts", "objectives.0.direction",
            "oracle.bogus", "bogus", "oracle.target_digit", "feature_map.kind"} <= fields


def test_base_config_is_good(tmp_path: Path) -> None:
    """The cases are bad because of their one edit: the base passes validation and preflight."""
    from bench.bad_config_cases import BASE

    path, db = BadCase("base", "base", None, BASE).write(tmp_path)
    service.preflight(load_config(path), source=str(path))
    assert not db.exists()


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_config_exit_2_one_message_nothing_written(
        case: BadCase, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "ray_runtime", refuse_ray)
    path, db = case.write(tmp_path)
    start = time.perf_counter()
    try:
        code = main(["run", str(path)])
    except ReachedRay as exc:
        pytest.fail(f"{exc}; {campaign_rows(db)} campaign row(s)")
    elapsed = time.perf_counter() - start
    out, err = capsys.readouterr()
    found = problems(case, path, db, code, out, err, elapsed)
    assert not found, "\n".join(found)
