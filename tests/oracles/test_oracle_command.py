"""Command oracle: real programs, real process groups, real timeouts."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from oracle_helpers import poll_until_done, process_gone
from oracles.command import CommandOracle
from oracles.errors import OracleConfigError
from oracles.protocol import QueryRequest

SPHERE = """
import json, sys
query = json.load(open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin)
x = query["design"]
flat = [v for row in x for v in (row if isinstance(row, list) else [row])]
print(json.dumps({"values": {"y": -sum(v * v for v in flat)}, "noise": {"y": 0.01},
                  "metadata": {"key": query["key"], "shape": query["shape"]}}))
"""

HANG = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stubborn program: only SIGKILL works
child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                          "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
with open(sys.argv[1], "w") as fh:
    fh.write(f"{os.getpid()} {child.pid}")
time.sleep(600)
"""

GARBAGE = """
import sys
print("this is not json {")
print("Traceback (most recent call last):\\nValueError: mesh did not converge", file=sys.stderr)
"""


def _script(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("input_mode", ["stdin", "file"])
def test_program_scores_designs(tmp_path, input_mode):
    argv = [sys.executable, _script(tmp_path, "sphere.py", SPHERE)]
    if input_mode == "file":
        argv.append("{input}")
    oracle = CommandOracle(argv, ("y",), input_mode=input_mode, timeout_s=60, max_concurrency=2)
    handles = oracle.submit([QueryRequest("a", np.array([1.0, 2.0])),
                             QueryRequest("img", np.ones((2, 2)))])
    a, img = poll_until_done(oracle, handles)
    assert a.values == {"y": -5.0} and a.noise == {"y": 0.01}
    assert a.metadata == {"key": "a", "shape": [2]}
    assert img.values == {"y": -4.0} and img.metadata["shape"] == [2, 2]
    oracle.close()


@pytest.mark.slow
def test_hanging_program_is_killed_with_its_children(tmp_path):
    pid_file = tmp_path / "pids"
    oracle = CommandOracle([sys.executable, _script(tmp_path, "hang.py", HANG), str(pid_file)],
                           timeout_s=5.0, kill_grace_s=0.3)
    started = time.monotonic()
    [result] = poll_until_done(oracle, oracle.submit([QueryRequest("h", np.zeros(2))]), 60)
    assert result.status == "failed" and "timed out after 5 s" in result.error
    assert "process group was killed" in result.error
    assert time.monotonic() - started < 30
    parent, child = map(int, pid_file.read_text().split())
    deadline = time.monotonic() + 10
    while not (process_gone(parent) and process_gone(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_gone(parent) and process_gone(child)
    oracle.close()


def test_garbage_output_fails_with_stderr_tail(tmp_path):
    oracle = CommandOracle([sys.executable, _script(tmp_path, "garbage.py", GARBAGE)])
    [result] = poll_until_done(oracle, oracle.submit([QueryRequest("g", np.zeros(2))]))
    assert result.status == "failed"
    assert "not a JSON object" in result.error and "this is not json" in result.error
    assert "ValueError: mesh did not converge" in result.error


@pytest.mark.parametrize("program, reason", [
    ("import sys; print('dying', file=sys.stderr); sys.exit(3)", "exited with code 3"),
    ("print('{\"y\": NaN}')", "values['y'] is nan"),
    ("print('{\"z\": 1.0}')", "lacks objective(s) ['y']"),
    ("print('{\"error\": \"sample broke\"}')", "reported: sample broke"),
])
def test_bad_exits_and_bad_values_fail_with_reason(tmp_path, program, reason):
    oracle = CommandOracle([sys.executable, "-c", program])
    [result] = poll_until_done(oracle, oracle.submit([QueryRequest("k", np.zeros(1))]))
    assert result.status == "failed" and reason in result.error


def test_concurrency_limit_is_respected(tmp_path):
    log = tmp_path / "log"
    program = (f"import json, os, time\nopen({str(log)!r}, 'a').write(f'start {{time.time()}}\\n')\n"
               f"time.sleep(0.4)\nopen({str(log)!r}, 'a').write(f'end {{time.time()}}\\n')\n"
               f"print(json.dumps({{'y': 1.0}}))\n")
    oracle = CommandOracle([sys.executable, "-c", program], max_concurrency=2)
    handles = oracle.submit([QueryRequest(f"k{i}", np.zeros(1)) for i in range(5)])
    oracle.submit([QueryRequest("k0", np.zeros(1))])  # a known key is not run again
    assert all(r.status == "succeeded" for r in poll_until_done(oracle, handles, 60))
    events = sorted((float(t), kind) for kind, t in (line.split() for line in
                                                      log.read_text().splitlines()))
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak <= 2 and len(events) == 10


def test_cancel_kills_a_running_program(tmp_path):
    pid_file = tmp_path / "pids"
    oracle = CommandOracle([sys.executable, _script(tmp_path, "hang.py", HANG), str(pid_file)],
                           timeout_s=300, kill_grace_s=0.2)
    handles = oracle.submit([QueryRequest("h", np.zeros(1))])
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    oracle.cancel(handles)
    [result] = poll_until_done(oracle, handles, 30)
    assert result.status == "cancelled"
    assert all(process_gone(int(p)) for p in pid_file.read_text().split())


@pytest.mark.parametrize("argv", ["python sim.py --fast", [], ["python", 3]])
def test_argv_must_be_a_list_of_strings(argv):
    with pytest.raises(OracleConfigError, match="argv must be a non-empty list of strings"):
        CommandOracle(argv)


def test_missing_program_fails_the_query():
    oracle = CommandOracle(["/nonexistent/simulator"])
    [result] = poll_until_done(oracle, oracle.submit([QueryRequest("k", np.zeros(1))]))
    assert result.status == "failed" and "cannot start '/nonexistent/simulator'" in result.error


def test_a_program_that_obeys_sigterm_is_not_kept_for_the_whole_grace_period(tmp_path):
    # The leader's zombie counted as a live group member, so every timeout and every cancel
    # cost the full kill_grace_s (here 45 s: far beyond any machine's start-up slack).
    oracle = CommandOracle([sys.executable, "-c", "import time; time.sleep(600)"],
                           timeout_s=1.0, kill_grace_s=45.0)
    started = time.monotonic()
    [result] = poll_until_done(oracle, oracle.submit([QueryRequest("t", np.zeros(1))]), 120)
    assert result.status == "failed" and "timed out after 1 s" in result.error
    assert time.monotonic() - started < 25
    oracle.close()
