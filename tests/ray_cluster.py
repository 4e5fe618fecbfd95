"""A real multi-node Ray cluster on loopback for tests and benchmarks: a head (no CPUs, so no
worker lands on it) and worker nodes, each its own ``ray start`` with its own raylet, custom
resource ``tiltloop_worker`` and temp dir.

Processes are found by this cluster's unique temp dir in their command line and ended by pid —
never ``ray stop``, which would end every Ray on the machine (the test session's own included).
A driver can join only one cluster per process, so campaigns on this cluster run in a
subprocess (``tiltloop run`` with ``[ray] address``, or ``python -c``).

    >>> with RayCluster(workers=2) as cluster:                    # doctest: +SKIP
    ...     subprocess.run([python, "-c", script], env=cluster.env())
"""
from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

RAY = str(Path(sys.executable).with_name("ray"))
#: Node-death detection within a few seconds (default: ~30 s), for a test's time budget.
FAST_FAILURE_ENV = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "4",
}


def can_hide_folders() -> bool:
    """Whether this machine lets us start a process in its own mount namespace."""
    try:
        out = subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t tmpfs t /mnt"],
                             capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


class RayCluster:
    """A head plus ``workers`` worker nodes (``cpus_per_node`` CPUs and ``tiltloop_worker`` =
    ``cpus_per_node`` each) on 127.0.0.1."""

    def __init__(self, workers: int = 2, *, cpus_per_node: int = 1, resource: str = "tiltloop_worker",
                 extra_env: dict[str, str] | None = None, hide: Sequence[str] = (),
                 port: int | None = None) -> None:
        # a short root: Ray's unix socket paths must stay under 108 characters
        self.root = Path(tempfile.mkdtemp(prefix="tlrc-", dir="/tmp"))
        self.tag = f"TILTLOOP_TEST_CLUSTER={self.root.name}"
        self.port = port or free_port()  # a restarted head keeps its address
        self.address = f"127.0.0.1:{self.port}"
        self.cpus_per_node = cpus_per_node
        self.resource = resource
        # Ray 2.5x+ authenticates every RPC with a token: this cluster's own, in its root
        token = self.root / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.extra_env = {**FAST_FAILURE_ENV, "RAY_AUTH_MODE": "token",
                          "RAY_AUTH_TOKEN_PATH": str(token), **(extra_env or {})}
        self.nodes: list[str] = []  # "head", "w0", ... in start order
        self._workers = workers
        self.hide = [str(Path(h).resolve()) for h in hide]

    # -- processes ---------------------------------------------------------------------------
    def _env(self, node: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        env.update(self.extra_env)
        env["TILTLOOP_TEST_CLUSTER"] = self.root.name
        env["TILTLOOP_TEST_NODE"] = node  # inherited by every process of that node
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        # Ray puts a driver script's folder first on its workers' sys.path: for
        # tests/cluster_driver.py that is tests/, whose optimizer/ (test folders, no __init__)
        # would shadow the package as a namespace; the repository root first keeps the real one
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
        tmp = self.root / node / "tmp"  # each node its own temp dir, as on separate machines
        tmp.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmp)
        return env

    def _ray_start(self, node: str, args: list[str]) -> None:
        temp = self.root / node
        temp.mkdir(exist_ok=True)
        cmd = [RAY, "start", *args, f"--temp-dir={temp}", "--disable-usage-stats",
               "--node-ip-address=127.0.0.1", f"--dashboard-agent-listen-port={free_port()}",
               f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]
        if node != "head" and self.hide:
            # the worker node's processes see an empty tmpfs over each hidden folder, as a
            # machine without that folder would (a private mount namespace; needs CAP_SYS_ADMIN)
            mounts = " && ".join(f"mount -t tmpfs tiltloop-hidden {shlex.quote(h)}" for h in self.hide)
            cmd = ["unshare", "--mount", "sh", "-c", f'{mounts} && exec "$@"', "sh", *cmd]
        # a loaded 2-core machine can miss `ray start`'s own startup waits (raylet / GCS); a
        # retry after clearing what that attempt left behind is what an operator would do
        errors = []
        for attempt in range(3):
            try:
                out = subprocess.run(cmd, env=self._env(node), capture_output=True, text=True,
                                     timeout=120)
            except subprocess.TimeoutExpired as exc:
                errors.append(f"attempt {attempt + 1}: timed out after 120 s: {exc.stderr!r}")
            else:
                if out.returncode == 0:
                    break
                errors.append(f"attempt {attempt + 1}:\n{out.stdout}\n{out.stderr}")
            self.kill(node)
            time.sleep(2.0)
        else:
            raise RuntimeError(f"`ray start` for node {node} failed 3 times:\n" + "\n".join(errors))
        if node not in self.nodes:
            self.nodes.append(node)

    def start_head(self) -> None:
        self._ray_start("head", ["--head", f"--port={self.port}", "--num-cpus=0",
                                 "--include-dashboard=false"])

    def start_worker(self, node: str) -> None:
        res = json.dumps({self.resource: self.cpus_per_node})
        self._ray_start(node, [f"--address={self.address}", f"--num-cpus={self.cpus_per_node}",
                               f"--resources={res}"])

    def start(self) -> RayCluster:
        self.start_head()
        for i in range(self._workers):
            self.start_worker(f"w{i}")
        self.wait_nodes(1 + self._workers)
        return self

    def pids(self, node: str | None = None, name: str | None = None) -> list[int]:
        """Pids of this cluster's processes (of one node; whose command line contains ``name``)."""
        out = []
        want_node = f"TILTLOOP_TEST_NODE={node}".encode() if node else None
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            pid = int(entry)
            env = _environ(pid)
            if self.tag.encode() not in env:
                continue
            if want_node is not None and want_node + b"\0" not in env + b"\0":
                continue
            if name is not None and name not in _cmdline(pid):
                continue
            out.append(pid)
        return out

    def kill(self, node: str, name: str | None = None, sig: int = signal.SIGKILL) -> list[int]:
        """Send ``sig`` to a node's processes (all, or those named ``name``, e.g. "raylet")."""
        pids = self.pids(node, name)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return pids

    def wait_nodes(self, alive: int, timeout_s: float = 60.0) -> None:
        """Wait until the head reports ``alive`` live nodes (asked in a subprocess)."""
        script = ("import ray,sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                  "print(sum(1 for n in ray.nodes() if n['Alive']))")
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-c", script, self.address], env=self.env(),
                                 capture_output=True, text=True, timeout=60)
            last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-500:]
            if out.returncode == 0 and last == str(alive):
                return
            time.sleep(0.5)
        raise TimeoutError(f"cluster {self.address}: expected {alive} live nodes, last saw {last!r}")

    def env(self) -> dict[str, str]:
        """Environment for a driver subprocess joining this cluster."""
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        env.update(self.extra_env)
        env["RAY_ADDRESS"] = self.address
        return env

    def stop(self) -> None:
        """End every process of this cluster (by pid), then remove its temp dir."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if Path(f"/proc/{p}").exists() and _cmdline(p)]
                time.sleep(0.1)
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RayCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
