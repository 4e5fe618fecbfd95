"""A Ray that tiltloop starts itself (``ray_init`` without an address) listens on loopback only:
every TCP listener of every process of that Ray — GCS, raylet, object manager, core workers (the
driver's and an actor's), dashboard agent, runtime-env agent, metrics exporter — binds 127.0.0.1,
none 0.0.0.0, ``::`` or the machine's routable address. Run in a subprocess (this session has
its own Ray); the Ray processes are told apart by an environment marker they all inherit."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).parents[3]

SCRIPT = r"""
import json, os, sys, time
import ray
from optimizer.campaign.service import ray_init

ray_init(None)

@ray.remote(num_cpus=0)
class A:
    def pid(self):
        return os.getpid()

a = A.remote()
ray.get(a.pid.remote(), timeout=120)   # an actor's core worker is up, too
marker = sys.argv[1].encode()

def socket_inodes(pid):
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(link[8:-1])
    except OSError:
        pass
    return out

def collect():
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                env = open(f"/proc/{entry}/environ", "rb").read()
                name = open(f"/proc/{entry}/comm").read().strip()
            except OSError:
                continue
            if marker in env:
                procs[int(entry)] = name
    inode_owner = {i: procs[p] for p in procs for i in socket_inodes(p)}

    def decode(hexaddr, v6):
        ip, port = hexaddr.split(":")
        raw = bytes.fromhex(ip)
        if not v6:
            return ".".join(str(b) for b in raw[::-1]), int(port, 16)
        words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
        b = b"".join(words)
        if b[:12] == b"\0" * 10 + b"\xff\xff":
            return "::ffff:" + ".".join(str(x) for x in b[12:]), int(port, 16)
        return ":".join(b[i:i + 2].hex() for i in range(0, 16, 2)), int(port, 16)

    listeners = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in open(table).read().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inode_owner:   # LISTEN
                ip, port = decode(f[1], v6)
                listeners.append([inode_owner[f[9]], ip, port])
    return procs, listeners

deadline = time.time() + 30   # agents start after the driver: wait until they listen (bounded)
while True:
    procs, listeners = collect()
    owners = {o for o, _, _ in listeners}
    agents = any("Dashboard" in o for o in owners) and any("RuntimeEnv" in o for o in owners)
    if agents or time.time() > deadline:
        break
    time.sleep(0.5)
time.sleep(2)                 # and whatever the agents open next (the metrics exporter)
procs, listeners = collect()
print(json.dumps({"procs": sorted(set(procs.values())), "listeners": listeners}))
ray.shutdown()
"""

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "0000:0000:0000:0000:0000:0000:0000:0001"}


def test_local_ray_listens_on_loopback_only() -> None:
    import json

    marker = f"TILTLOOP_LOOPBACK_TEST={uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    env[marker.split("=")[0]] = marker.split("=")[1]
    out = subprocess.run([sys.executable, "-c", SCRIPT, marker], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    owners = {owner for owner, _, _ in report["listeners"]}
    # the processes that serve the cluster listen (so this test can fail); the agents' HTTP
    # servers are checked when they run: ray.init gives the dashboard agent the fixed port
    # 52365, so next to another Ray on this host (this session's) it runs without one
    assert {"gcs_server", "raylet"} <= owners, report
    assert any(o.startswith("ray::A") for o in owners), report  # an actor's core worker
    assert len(report["listeners"]) >= 4, report
    wide = [entry for entry in report["listeners"] if entry[1] not in LOOPBACK]
    assert not wide, f"listeners not on loopback: {wide}"
