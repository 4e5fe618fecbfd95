"""Run ``tiltloop`` in a subprocess that SIGKILLs itself at a named crash point
(``optimizer.campaign.crashpoints``; importable by module name from the tests folder)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli_until_crash(args: list[str], point: str, log: Path) -> int:
    """``python -m optimizer.cli *args`` with ``TILTLOOP_CRASH_AT=point``, its output appended to
    ``log``; the exit status (negative: killed by that signal)."""
    env = {**os.environ, "TILTLOOP_CRASH_AT": point,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log, "a") as out:
        out.write(f"--- tiltloop {' '.join(args)} (crash at {point})\n")
        out.flush()
        proc = subprocess.run([sys.executable, "-m", "optimizer.cli", *args], cwd=ROOT, env=env,
                              stdout=out, stderr=subprocess.STDOUT, timeout=240)
    return proc.returncode


def killed_at(args: list[str], point: str, log: Path) -> None:
    """:func:`cli_until_crash`, asserting that the process was SIGKILLed at ``point`` (the log's
    tail in the message otherwise)."""
    rc = cli_until_crash(args, point, log)
    assert rc == -signal.SIGKILL, \
        f"{args[0]} exited {rc}, not killed at {point}:\n{log.read_text()[-3000:]}"
