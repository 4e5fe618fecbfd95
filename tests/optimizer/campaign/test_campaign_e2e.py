"""End to end: a small campaign against the lab simulator over HTTP completes its budget."""
from __future__ import annotations

from pathlib import Path

import pytest

from optimizer.campaign.service import run_campaign
from storage import Storage


def _check_exactly_once(url: str, name: str, budget: int, lab) -> None:  # type: ignore[no-untyped-def]
    with Storage.open(url) as st:
        counts = st.query_counts(name)
        assert counts["succeeded"] == budget and sum(counts.values()) == budget
        keys = set()
        for r in st.list_rounds(name):
            assert r.status == "complete"
            cands = st.list_candidates(name, r.index)
            selected = [c for c in cands if c.selected]
            assert len(selected) == len(r.query_keys)
            assert all(c.query_key is not None for c in selected)
            assert all(c.query_key is None for c in cands if not c.selected)
            keys.update(c.query_key for c in selected)
        assert len(keys) == budget
        history = st.load_history(name)
        assert len(history.completed) == budget
    evals = lab.store.evaluations
    assert set(evals) == keys and max(evals.values()) == 1


def test_plain_prior_round_on_sqlite(ray_session: str, tiny_prior_path: str, lab, tmp_path: Path, make_config) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    cfg = make_config("r0", tiny_prior_path, lab.url, url, budget={"total": 4})
    lines: list[str] = []
    status = run_campaign(cfg, progress=lines.append)
    assert status.status == "completed" and status.results == 4
    _check_exactly_once(url, "r0", 4, lab)
    assert any("plain prior" in ln for ln in lines)
