"""CLI logging: WARNING records on stderr, plain or JSON lines, one handler however often main runs."""
from __future__ import annotations

import json
import logging

import pytest

from optimizer.cli import main
from tiltloop.logs import configure_logging


def test_json_lines_and_no_duplicate_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING", json_lines=True)
    configure_logging("WARNING", json_lines=True)  # a second main() in one process
    logging.getLogger("optimizer.campaign.driver").warning("campaign %s paused (key %s)", "c1", "c1:0:3")
    logging.getLogger("optimizer.campaign.driver").info("not shown at WARNING")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 1
    assert lines[0]["level"] == "WARNING" and lines[0]["logger"] == "optimizer.campaign.driver"
    assert lines[0]["message"] == "campaign c1 paused (key c1:0:3)" and lines[0]["time"].endswith("Z")


def test_cli_log_level_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--log-level", "LOUD", "status"])
    assert "invalid choice: 'LOUD'" in capsys.readouterr().err
    configure_logging("INFO")
    logging.getLogger("oracles.http").info("retrying key %s", "c1:0:1")
    assert "INFO oracles.http: retrying key c1:0:1" in capsys.readouterr().err
    configure_logging("WARNING")
