"""A TCP forwarder in front of Postgres that can cut and refuse connections (a database outage).

The campaign's database URL points at ``forwarder.port`` on 127.0.0.1 (:meth:`PgForwarder.url`);
each accepted connection is piped to the real server (default 127.0.0.1:5432) by one thread.

- :meth:`cut`: every open connection is reset (RST to the client, closed to the server): a query
  in progress fails, a pooled connection is dead;
- :meth:`refuse`: new connections are refused — ``mode="reset"`` accepts and resets them at
  once (the listening socket stays), ``mode="unlisten"`` closes the listening socket (the
  client gets ECONNREFUSED) and :meth:`refuse` ``(False)`` binds the same port again;
- :meth:`outage` does both, then lets connections through again after ``seconds``;
  :meth:`felt_outage` (blocking) counts the ``seconds`` from the first connection attempt it
  refused, so the client certainly sees an outage that long (a driver busy in SMC touches no
  database: a blind 2 s outage could fall between two of its writes).

Connections are counted (``accepted``, ``forwarded``, ``refused``, ``cut_count``, ``open``).
Every wait is bounded: accept and relay loops wake every ``tick_s`` to check the stop flag, the
upstream connect times out after ``connect_timeout_s``, and :meth:`close` joins each thread with
a limit.

    >>> with PgForwarder() as fwd:                                   # doctest: +SKIP
    ...     url = fwd.url("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ...     fwd.outage(2.0)          # returns at once; connections work again after 2 s
"""
from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from typing import Any

import sqlalchemy as sa


class _Pipe:
    """One client connection and its upstream twin."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()

    def reset(self) -> None:
        """Abort both sides (linger 0: the close sends RST); wakes the relay thread."""
        for sock in (self.client, self.upstream):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer or the relay


class PgForwarder:
    """The forwarder (see the module docstring).

    Args:
        target: ``(host, port)`` of the real Postgres server.
        tick_s: how often blocked loops check the stop flag.
        connect_timeout_s: limit of each upstream connect.
    """

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432), *, tick_s: float = 0.1,
                 connect_timeout_s: float = 5.0) -> None:
        self.target = target
        self.tick_s = tick_s
        self.connect_timeout_s = connect_timeout_s
        self.port = 0
        self.accepted = 0  # connections accepted (forwarded or reset at once)
        self.forwarded = 0  # connections piped to the server
        self.refused = 0  # connections reset at once, or failed to reach the server
        self.cut_count = 0  # connections reset by cut()
        self._lock = threading.Lock()
        self._pipes: set[_Pipe] = set()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._refusing = False
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # ---- life cycle ----------------------------------------------------------------------------
    def start(self) -> PgForwarder:
        """Listen on 127.0.0.1 (an ephemeral port the first time) and start accepting."""
        self._listen()
        return self

    def __enter__(self) -> PgForwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, reset every connection, join every thread (at most ``timeout_s``)."""
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
        self._unlisten()
        self.cut()
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def url(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by this forwarder's."""
        parsed = sa.make_url(database_url).set(host="127.0.0.1", port=self.port)
        return parsed.render_as_string(hide_password=False)

    # ---- faults --------------------------------------------------------------------------------
    def cut(self) -> int:
        """Reset every open connection; returns how many."""
        with self._lock:
            pipes = list(self._pipes)
            self.cut_count += len(pipes)
        for pipe in pipes:
            pipe.reset()
        return len(pipes)

    def refuse(self, on: bool = True, *, mode: str = "reset") -> None:
        """Refuse new connections (``on``) or let them through again (see the module docstring
        for the two modes)."""
        if mode not in ("reset", "unlisten"):
            raise ValueError(f"refuse mode must be 'reset' or 'unlisten', got {mode!r}")
        with self._lock:
            self._refusing = on
        if mode == "unlisten" and on:
            self._unlisten()
        if not on and self._listener is None and not self._stop.is_set():
            self._listen()

    def outage(self, seconds: float, *, mode: str = "reset") -> None:
        """Refuse new connections and cut the open ones now; let them through after ``seconds``
        (a timer thread: returns at once)."""
        if self._timer is not None:
            self._timer.cancel()
        self.refuse(True, mode=mode)
        self.cut()
        self._timer = threading.Timer(seconds, self.refuse, args=(False,))
        self._timer.daemon = True
        self._timer.start()

    def felt_outage(self, seconds: float, *, timeout_s: float = 120.0) -> float:
        """Cut and refuse now; let connections through ``seconds`` after the first refused
        attempt (at most ``timeout_s`` waiting for one). Returns the outage's total length."""
        started = time.monotonic()
        before = self.refused
        self.refuse(True)
        self.cut()
        try:
            deadline = started + timeout_s
            while self.refused == before:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no connection attempt within {timeout_s:g} s of the outage "
                                       f"({self.stats()})")
                time.sleep(0.02)
            time.sleep(seconds)
        finally:
            self.refuse(False)
        return time.monotonic() - started

    @property
    def refusing(self) -> bool:
        """True while new connections are refused."""
        return self._refusing

    @property
    def open(self) -> int:
        """Connections piped now."""
        with self._lock:
            return len(self._pipes)

    def stats(self) -> dict[str, Any]:
        """The counters, for test failure messages."""
        return {"accepted": self.accepted, "forwarded": self.forwarded, "refused": self.refused,
                "cut": self.cut_count, "open": self.open, "refusing": self._refusing}

    # ---- internals -----------------------------------------------------------------------------
    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        sock.settimeout(self.tick_s)
        self.port = sock.getsockname()[1]
        self._listener = sock
        self._acceptor = self._spawn(self._accept_loop, sock, name=f"pg-forwarder-{self.port}")

    def _unlisten(self) -> None:
        sock, self._listener = self._listener, None
        if sock is not None:
            sock.close()  # the accept loop sees it at its next tick
        if self._acceptor is not None:
            self._acceptor.join(timeout=2 * self.tick_s + 1.0)
            self._acceptor = None

    def _spawn(self, target: Any, *args: Any, name: str) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop.is_set() and self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listening socket was closed
            self.accepted += 1
            if self._refusing:
                self.refused += 1
                _Pipe(client, client).reset()
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=self.connect_timeout_s)
            except OSError:
                self.refused += 1
                _Pipe(client, client).reset()
                client.close()
                continue
            pipe = _Pipe(client, upstream)
            with self._lock:
                self._pipes.add(pipe)
                self.forwarded += 1
            self._spawn(self._relay, pipe, name=f"pg-forwarder-relay-{self.forwarded}")

    def _relay(self, pipe: _Pipe) -> None:
        peer = {pipe.client: pipe.upstream, pipe.upstream: pipe.client}
        sel = selectors.DefaultSelector()
        try:
            for sock in peer:
                sock.setblocking(True)
                sock.settimeout(self.connect_timeout_s)  # bounds a sendall to a stuck peer
                sel.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=self.tick_s):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        return
                    peer[src].sendall(data)
        except (OSError, ValueError):
            return  # reset by cut(), or the peer went away
        finally:
            sel.close()
            with self._lock:
                self._pipes.discard(pipe)
            for sock in peer:
                try:
                    sock.close()
                except OSError:
                    pass
            pipe.closed.set()
