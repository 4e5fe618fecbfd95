"""Campaign context on log lines: every JSON line logged inside ``campaign_context`` (in its own
thread) carries ``"campaign"``, ``extra={"key": ...}`` adds ``"key"``; plain lines end with a tag."""
from __future__ import annotations

import json
import logging
import threading

import pytest

from tiltloop.logs import campaign_context, configure_logging, current_campaign

log = logging.getLogger("optimizer.service.scheduler")


def _drive(name: str) -> None:
    with campaign_context(name):
        log.warning("query failed; retrying", extra={"key": f"{name}:0:1"})
        log.warning("round 0 recorded")


def test_each_driver_thread_tags_its_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING", json_lines=True)
    try:
        threads = [threading.Thread(target=_drive, args=(n,)) for n in ("c1", "c2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        log.warning("outside any campaign")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        configure_logging("WARNING")
    by_campaign = {c: [ln for ln in lines if ln.get("campaign") == c] for c in ("c1", "c2")}
    for name, mine in by_campaign.items():
        assert [ln["message"] for ln in mine] == ["query failed; retrying", "round 0 recorded"]
        assert mine[0]["key"] == f"{name}:0:1" and "key" not in mine[1]
    outside = [ln for ln in lines if ln["message"] == "outside any campaign"]
    assert len(outside) == 1 and "campaign" not in outside[0] and "key" not in outside[0]
    assert current_campaign() is None


def test_plain_lines_end_with_the_campaign_tag(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING")
    with campaign_context("c1"):
        log.warning("paused", extra={"key": "c1:2:0"})
        log.warning("lease renewed")
    log.warning("no campaign", extra={"campaign": "c9"})  # an explicit extra wins
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("optimizer.service.scheduler: paused [c1 key=c1:2:0]")
    assert err[1].endswith("lease renewed [c1]")
    assert err[2].endswith("no campaign [c9]")


def test_tag_sits_before_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING", json_lines=True)
    try:
        with campaign_context("c3"):
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                log.warning("driver failed", exc_info=True)
        doc = json.loads(capsys.readouterr().err.strip())
    finally:
        configure_logging("WARNING")
    assert doc["campaign"] == "c3" and "RuntimeError: boom" in doc["exception"]
    configure_logging("WARNING")
    with campaign_context("c3"):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.warning("driver failed", exc_info=True)
    first, *rest = capsys.readouterr().err.splitlines()
    assert first.endswith("driver failed [c3]") and rest[-1] == "RuntimeError: boom"
