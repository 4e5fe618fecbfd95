"""HeadWatch: a head that stops answering ends the process with status 4 and the remedy; a head
that answers keeps it alive. Run in subprocesses, since the watch ends its own process."""
from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import pytest

from optimizer.workers.head_watch import EXIT_RAY_LOST, head_reachable

SCRIPT = textwrap.dedent("""
    import sys, time
    from optimizer.workers.head_watch import HeadWatch
    campaign = None if sys.argv[2] == "-" else sys.argv[2]
    HeadWatch(sys.argv[1], campaign=campaign, timeout_s=0.5, interval_s=0.1).start()
    time.sleep(float(sys.argv[3]))
    print("still alive")
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _watch(address: str, campaign: str, seconds: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, address, campaign, str(seconds)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("campaign", "remedy"), [("c1", "tiltloop resume c1"),
                                                  ("-", "restart `tiltloop serve`")])
def test_a_head_that_does_not_answer_ends_the_process_with_the_remedy(campaign, remedy):
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    assert not head_reachable(address)
    t0 = time.monotonic()
    out = _watch(address, campaign, 30)
    assert out.returncode == EXIT_RAY_LOST, out.stderr
    assert "still alive" not in out.stdout
    assert time.monotonic() - t0 < 25  # it did not sleep the 30 s out
    assert address in out.stderr and remedy in out.stderr


def test_a_head_that_answers_keeps_the_process():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        out = _watch(address, "c1", 1.5)
    assert out.returncode == 0, out.stderr
    assert "still alive" in out.stdout
