"""Command oracle: a simulation program run once per design.

1. The program is an argument list (``["python", "sim.py", "--fast"]``), never a shell string: no
   quoting bugs, no shell injection through metadata.
2. Input, as JSON ``{"key", "design", "shape", "metadata"}``: on stdin (``input_mode="stdin"``) or
   in a temporary file (``input_mode="file"``) whose path replaces the argument ``"{input}"``
   (or is appended when no argument is ``"{input}"``).
3. Output on stdout, one JSON object: ``{"values": {...}, "noise": {...}?, "metadata": {...}?}``,
   or the flat ``{"objective": value, ...}``, or ``{"error": "why"}`` for a failed evaluation.
4. Each run starts a new session (its own process group). At ``timeout_s`` the WHOLE group gets
   SIGTERM, then SIGKILL after ``kill_grace_s``: a hung program's children die with it.
5. At most ``max_concurrency`` programs run at once; more queries wait in order.

A non-zero exit, garbage on stdout or a timeout fails the query with the program's stderr tail in
the reason.

>>> oracle = CommandOracle(["python", "simulate.py"], objectives=("energy",), timeout_s=600)
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from oracles.errors import OracleConfigError
from oracles.futures import PooledOracle
from oracles.protocol import Evaluation, JobHandle, QueryRequest, QueryResult, design_to_json
from oracles.safe import describe
from oracles.sync import check_objectives, result_from_output
from oracles.validation import failed

logger = logging.getLogger(__name__)
INPUT_PLACEHOLDER = "{input}"


def _tail(data: bytes | None, limit: int) -> str:
    text = (data or b"").decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _kill_group(pgid: int, grace_s: float, leader: subprocess.Popen | None = None) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after ``grace_s``.

    ``leader`` (the group's first process) is reaped while waiting: an unreaped zombie still
    counts as a group member, so without it every kill waited the whole grace period.
    """
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if leader is not None:
                leader.poll()
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.02)


class CommandOracle(PooledOracle):
    """Runs a program per design (see module docstring).

    Args:
        argv: the program and its arguments, a list of strings.
        objectives: objective names the program reports (maximized).
        input_mode: ``"stdin"`` or ``"file"``.
        timeout_s: wall-clock limit per query.
        kill_grace_s: seconds between SIGTERM and SIGKILL of the process group.
        max_concurrency: programs running at once.
        cwd: working directory of the program.
        env: variables added to (or overriding) the inherited environment.
        stderr_tail_chars: how much of stderr a failure reason carries.
        name: shown in logs.
    """

    def __init__(self, argv: Sequence[str], objectives: Sequence[str] = ("y",), *,
                 input_mode: Literal["stdin", "file"] = "stdin", timeout_s: float = 3600.0,
                 kill_grace_s: float = 5.0, max_concurrency: int = 1,
                 cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
                 stderr_tail_chars: int = 2000, name: str | None = None) -> None:
        if isinstance(argv, (str, bytes)) or not argv or not all(isinstance(a, str) for a in argv):
            raise OracleConfigError(
                f"argv must be a non-empty list of strings (the program and its arguments, no "
                f"shell), got {argv!r}; e.g. ['python', 'simulate.py', '--fast']")
        if input_mode not in ("stdin", "file"):
            raise OracleConfigError(f"input_mode must be 'stdin' or 'file', got {input_mode!r}")
        if timeout_s <= 0 or kill_grace_s < 0 or max_concurrency < 1:
            raise OracleConfigError(f"need timeout_s > 0, kill_grace_s >= 0, max_concurrency >= 1; "
                                    f"got {timeout_s}, {kill_grace_s}, {max_concurrency}")
        self.argv = list(argv)
        self.objectives = check_objectives(objectives)
        self.input_mode = input_mode
        self.timeout_s = float(timeout_s)
        self.kill_grace_s = float(kill_grace_s)
        self.cwd = str(cwd) if cwd else None
        self.env = {**os.environ, **dict(env or {})}
        self.stderr_tail_chars = int(stderr_tail_chars)
        self.name = name or Path(self.argv[0]).name
        super().__init__(max_workers=max_concurrency, thread_name_prefix="cmd-oracle")
        self._running: dict[str, subprocess.Popen] = {}
        self._cancelled: set[str] = set()

    def __repr__(self) -> str:
        return f"CommandOracle(argv={self.argv!r}, objectives={self.objectives})"

    # ---- one run --------------------------------------------------------------------------
    def _run(self, request: QueryRequest) -> QueryResult:
        key = request.key
        with self._lock:
            if key in self._cancelled:
                return QueryResult(key=key, status="cancelled")
        design = np.asarray(request.design)
        payload = json.dumps({"key": key, "design": design_to_json(design),
                              "shape": list(design.shape), "metadata": request.metadata})
        with tempfile.TemporaryDirectory(prefix="tiltloop-cmd-") as tmp:
            argv = list(self.argv)
            stdin_data: bytes | None = payload.encode()
            if self.input_mode == "file":
                path = Path(tmp) / "input.json"
                path.write_text(payload)
                argv = ([str(path) if a == INPUT_PLACEHOLDER else a for a in argv]
                        if INPUT_PLACEHOLDER in argv else [*argv, str(path)])
                stdin_data = None
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.cwd or tmp,
                    env=self.env, start_new_session=True)
            except OSError as exc:
                return failed(key, f"cannot start {argv[0]!r}: {exc.strerror or exc}; check argv "
                                   f"and that the program is executable")
            with self._lock:
                self._running[key] = proc
            timed_out = False
            try:
                out, err = proc.communicate(stdin_data, timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid, self.kill_grace_s, proc)
                try:
                    out, err = proc.communicate(timeout=5)
                except subprocess.TimeoutExpired:  # a grandchild left the group holding the pipes
                    proc.kill()
                    out, err = b"", b""
            finally:
                _kill_group(proc.pid, 0.0)  # leftovers of a program that exited: no orphans
                with self._lock:
                    self._running.pop(key, None)
                    was_cancelled = key in self._cancelled
        stderr_tail = _tail(err, self.stderr_tail_chars)
        if was_cancelled:
            return QueryResult(key=key, status="cancelled")
        if timed_out:
            return failed(key, f"{self.name} timed out after {self.timeout_s:g} s; its process "
                               f"group was killed | stderr tail: {stderr_tail}")
        if proc.returncode != 0:
            return failed(key, f"{self.name} exited with code {proc.returncode} | stderr tail: "
                               f"{stderr_tail}")
        return self._parse(key, out, stderr_tail)

    def _parse(self, key: str, out: bytes, stderr_tail: str) -> QueryResult:
        text = (out or b"").decode("utf-8", errors="replace").strip()
        try:
            reply: Any = json.loads(text)
            if not isinstance(reply, dict):
                raise ValueError(f"expected a JSON object, got {type(reply).__name__}")
        except ValueError as exc:
            return failed(key, f"{self.name} printed output that is not a JSON object ({exc}); "
                               f"stdout head: {text[:200]!r} | stderr tail: {stderr_tail}")
        if "error" in reply and reply["error"] is not None:
            return failed(key, f"{self.name} reported: {str(reply['error'])[:1000]}")
        if isinstance(reply.get("values"), dict):
            metadata: dict[str, Any] = reply["metadata"] if isinstance(reply.get("metadata"), dict) else {}
            output: Any = Evaluation(values=reply["values"], noise=reply.get("noise"),
                                     metadata=metadata)
        else:
            output = reply
        result = result_from_output(key, output, self.objectives)
        if result.status == "failed":
            return failed(key, f"{result.error} | stderr tail: {stderr_tail}", result.metadata)
        return result

    def _evaluate(self, request: QueryRequest) -> QueryResult:
        try:
            return self._run(request)
        except Exception as exc:  # a bug here must fail one query, not the pool
            return failed(request.key, f"command oracle error: {describe(exc)}")

    # ---- the protocol ------------------------------------------------------------------------
    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Drop queued runs; kill the process group of running ones."""
        for handle in handles:
            with self._lock:
                self._cancelled.add(handle.key)
                future = self._futures.get(handle.key)
                proc = self._running.get(handle.key)
            if future is not None:
                future.cancel()
            if proc is not None:
                _kill_group(proc.pid, self.kill_grace_s, proc)

    def close(self) -> None:
        """Kill running programs and stop the pool."""
        with self._lock:
            running = list(self._running.values())
        for proc in running:
            _kill_group(proc.pid, 0.0)
        self._pool.shutdown(wait=True, cancel_futures=True)
