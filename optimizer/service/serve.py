"""``tiltloop serve``: the API (uvicorn, main thread) next to the scheduler (its own threads), on
one Ray cluster and one database.

Start-up, in this order so a mistake fails before anything runs: open the database (its schema
must exist), bind the listening socket (``port=0``: a free port), start or join Ray once
(``RAY_ADDRESS`` joins a cluster; else a local Ray advertised on 127.0.0.1), then start the
scheduler and serve. One line goes to stdout when it listens::

    tiltloop serve: listening on http://127.0.0.1:8080 as replica host:1234:ab12cd34

SIGTERM or SIGINT: stop taking campaigns, tell every driver to stop (each ends after the
transaction it is in and releases its lease), stop uvicorn, join the drivers within
``stop_timeout_s``, kill the shared worker pools, shut Ray down if this process started it, and
return 0. A second SIGINT stops uvicorn without waiting for open connections. A signal while
Ray starts is honoured once Ray is up (exit 0) — except inside Ray's native start-up, whose own
SIGTERM handler ends the process (exit 143; nothing was taken or sent yet).
"""
from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, TextIO

from optimizer.campaign.lease import driver_owner
from optimizer.service.metrics import ServiceMetrics
from optimizer.service.pools import WorkerPools
from optimizer.service.scheduler import Scheduler
from storage import Storage

log = logging.getLogger(__name__)

#: Seconds the drivers get to finish their current pass at shutdown.
STOP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ServeOptions:
    """What ``tiltloop serve`` was asked for (the CLI flags)."""

    url: str
    host: str = "127.0.0.1"
    port: int = 8080
    lease_ttl_s: float = 30.0
    max_campaigns: int = 50
    tick_s: float = 1.0
    stop_timeout_s: float = STOP_TIMEOUT_S


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port, read back from the socket).

    Raises:
        OSError: the address is taken or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every response waits ~40 ms on Nagle + delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)  # clients may connect before uvicorn's loop runs: they queue
    except OSError:
        sock.close()
        raise
    return sock


def _open_storage(url: str) -> Storage:
    """The database, whose schema must exist (the service never migrates on its own)."""
    from optimizer.campaign.service import open_storage
    from optimizer.errors import CampaignStateError
    from storage.errors import SchemaError

    try:
        return open_storage(url, create=False)
    except SchemaError as exc:
        raise CampaignStateError(f"--url: {exc}; `tiltloop serve` does not create or migrate "
                                 "the schema itself") from None


class _StoppedWhileStarting(Exception):
    """SIGTERM arrived while Ray was starting."""


#: Seconds a joined Ray head may be unreachable before ``tiltloop serve`` exits (status 4).
HEAD_TIMEOUT_S = 20.0


@contextmanager
def _ray() -> Iterator[bool]:
    """Ray for the whole process: joined (``RAY_ADDRESS``) or started here; yields whether this
    process started it, and shuts down what it started on the way out."""
    import os

    import ray

    from optimizer.campaign.service import ray_init

    if ray.is_initialized():  # embedded (tests): the caller owns Ray
        yield False
        return
    try:
        ray_init(None, field="$RAY_ADDRESS")
    except SystemExit:  # ray.init's own SIGTERM handler (sys.exit) fired while Ray started
        if ray.is_initialized():
            ray.shutdown()
        raise _StoppedWhileStarting from None
    started = not os.environ.get("RAY_ADDRESS")
    watch = None
    if not started:  # a joined cluster: a lost head ends the process, so its supervisor
        # restarts it (a process whose Ray is gone would stay alive but never ready again)
        from optimizer.workers.head_watch import HeadWatch

        watch = HeadWatch(ray.get_runtime_context().gcs_address, campaign=None,
                          timeout_s=HEAD_TIMEOUT_S).start()
    try:
        yield started
    finally:
        if watch is not None:
            watch.stop()
        # a joined cluster stays up; only this process's connection (and its actors) ends
        ray.shutdown()


def _uvicorn_server(app: Any, sock: socket.socket) -> Any:
    """A uvicorn server that leaves signals to us: its ``capture_signals`` (0.29+) would
    re-raise the signal after shutdown, which would kill the process before the drivers stop."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        def install_signal_handlers(self) -> None:  # uvicorn < 0.29 names it so
            return

    # keep-alive past a lab's gap between claim and report (uvicorn's 5 s default closes the
    # idle connection just as a client reuses it: a spurious connection error per request)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=10, timeout_keep_alive=75)
    return _Server(config)


def serve(options: ServeOptions, *, out: TextIO | None = None) -> int:
    """Run the service until SIGTERM/SIGINT (see the module docstring); returns the exit code.

    Raises:
        CampaignStateError: the database has no schema (or no SQLite file at that path).
        PreflightError: Ray cannot be joined or started.
        OSError: the address cannot be bound.
    """
    from optimizer.service.app import create_app

    out = out or sys.stdout
    storage = _open_storage(options.url)
    try:
        sock = bind_socket(options.host, options.port)
    except OSError as exc:
        storage.close()
        from optimizer.errors import CampaignStateError

        raise CampaignStateError(f"--host/--port: cannot listen on {options.host}:{options.port} "
                                 f"({exc.strerror or exc}); choose another port, or 0 for a "
                                 "free one") from None
    # a signal while Ray starts (seconds) is remembered, not fatal: ray.init installs its own
    # SIGTERM handler (sys.exit), so ours is installed again once Ray is up
    early: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: early.append(s))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with _ray() as started_ray:
            return _serve(options, storage, sock, started_ray, out, create_app, early)
    except _StoppedWhileStarting:
        log.warning("tiltloop serve: SIGTERM received while Ray was starting; stopped before "
                    "taking any campaign")
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        storage.close()


def _serve(options: ServeOptions, storage: Storage, sock: socket.socket, started_ray: bool,
           out: TextIO, create_app: Any, early: list[int]) -> int:
    owner = driver_owner()
    metrics = ServiceMetrics(storage)
    pools = WorkerPools()
    scheduler = Scheduler(storage, owner=owner, metrics=metrics, lease_ttl_s=options.lease_ttl_s,
                          tick_s=options.tick_s, max_campaigns=options.max_campaigns, pools=pools)
    app = create_app(storage, metrics=metrics, readiness=scheduler.readiness, replica=owner)
    server = _uvicorn_server(app, sock)

    def on_signal(sig: int, frame: FrameType | None) -> None:
        if server.should_exit and sig == signal.SIGINT:
            server.force_exit = True  # a second Ctrl-C: do not wait for open connections
        log.warning("tiltloop serve: %s received; stopping: no new campaigns, drivers end after "
                    "their current transaction and release their leases",
                    signal.Signals(sig).name)
        scheduler.request_stop()
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    for got in early[:1]:  # asked to stop while Ray started: serve nothing, stop cleanly
        on_signal(got, None)
    try:
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        if not is_loopback(options.host):
            log.warning("tiltloop serve: listening on %s, which is not a loopback address: every "
                        "route except /healthz and /readyz still needs a bearer token, but "
                        "put TLS (a reverse proxy) in front of it", options.host)
        scheduler.start()
        print(f"tiltloop serve: listening on http://{shown}:{port} as replica {owner}",
              file=out, flush=True)
        server.run(sockets=[sock])
    finally:
        scheduler.request_stop()
        late = scheduler.stop(timeout_s=options.stop_timeout_s)
        pools.shutdown_all()
        log.info("tiltloop serve: stopped (replica %s%s; Ray %s)", owner,
                 f"; drivers still running: {', '.join(late)}" if late else "",
                 "shut down" if started_ray else "left running")
    return 0
