"""Manual oracle (ask / tell) for a person, or a lab without an API.

1. ``submit`` records the designs in ``DIR/manual-state.json`` and rewrites ``DIR/pending.csv``
   (or ``.json``): one row per design still waiting, with empty objective columns to fill in.
2. The person measures, fills the objective columns (or ``error`` for a failed measurement) and
   hands the file back: ``import_results(path)`` validates EVERY row first; any problem rejects
   the whole file with ``ManualResultsError``, one message per bad row WITH ITS LINE NUMBER, and
   nothing is imported. Rows left blank stay pending; re-importing the same values is harmless.
3. ``poll`` reports the imported results. State lives in ``DIR``, so a restarted campaign finds
   its pending designs and results again.

CSV layout: ``key,shape,x0..x{n-1},<objectives...>,error`` (designs flattened row-major,
``shape`` like ``8x8``; optional ``noise_<objective>`` columns carry noise variances). JSON
layout: a list (or JSON Lines) of ``{"key", "values": {...}, "noise"?, "error"?}``.

>>> oracle = ManualOracle("campaign/manual", objectives=("yield",))
>>> handles = oracle.submit(requests)            # then give campaign/manual/pending.csv to the lab
>>> oracle.import_results("campaign/manual/pending.csv")   # after they filled it in
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from oracles.errors import ManualResultsError, OracleConfigError
from oracles.protocol import JobHandle, QueryRequest, QueryResult, design_to_json
from oracles.sync import check_objectives

STATE_FILE = "manual-state.json"
#: The largest results file ``import_results`` reads (checked before reading it).
MAX_RESULTS_BYTES = 64 * 1024 * 1024
#: The largest CSV cell, in characters (Python's csv module refuses bigger fields).
MAX_CELL_CHARS = csv.field_size_limit()


@dataclass(frozen=True)
class ImportSummary:
    """What one ``import_results`` call did."""

    path: str
    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    still_pending: tuple[str, ...]


def _json_rows(text: str, path: str) -> list[tuple[int, Any]]:
    """``(line, value)`` per element of a JSON array, or per line of JSON Lines."""
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def line_of(i: int) -> int:
        return text.count("\n", 0, i) + 1

    i = skip(0)
    if i == len(text):
        raise ManualResultsError(path, [(1, "the file is empty")])
    rows: list[tuple[int, Any]] = []
    if text[i] != "[":  # JSON Lines: one object per line
        # split on "\n" only: str.splitlines() also breaks at U+2028, \x0c, \x1c..., which
        # JSON strings may hold, and would reject a valid row (and shift every line number)
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ManualResultsError(path, [(number, f"not valid JSON: {exc.msg} "
                                                             f"(column {exc.colno})")]) from None
        return rows
    i = skip(i + 1)
    while i < len(text) and text[i] != "]":
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise ManualResultsError(path, [(exc.lineno, f"not valid JSON: {exc.msg} "
                                                         f"(column {exc.colno})")]) from None
        rows.append((line_of(i), value))
        i = skip(end)
        if i < len(text) and text[i] == ",":
            i = skip(i + 1)
        elif i >= len(text) or text[i] != "]":
            raise ManualResultsError(path, [(line_of(min(i, len(text) - 1)),
                                             "expected ',' or ']' after an element")])
    return rows


class ManualOracle:
    """Ask/tell through files (see module docstring).

    Args:
        directory: where the state and the pending export live (created if missing).
        objectives: objective names (maximized).
        export_format: ``"csv"`` or ``"json"`` for ``pending.<format>``.
        name: shown in logs.
        where: names the oracle in row errors (default: its directory).
    """

    def __init__(self, directory: str | Path, objectives: Sequence[str] = ("y",), *,
                 export_format: Literal["csv", "json"] = "csv", name: str = "manual",
                 where: str | None = None) -> None:
        if export_format not in ("csv", "json"):
            raise OracleConfigError(f"export_format must be 'csv' or 'json', got {export_format!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.objectives = check_objectives(objectives)
        self.export_format = export_format
        self.name = name
        self._where = where or str(self.directory)
        self._lock = threading.RLock()
        self._pending: dict[str, dict[str, Any]] = {}
        self._results: dict[str, dict[str, Any]] = {}
        state = self.directory / STATE_FILE
        if state.exists():
            try:
                data = json.loads(state.read_text())
                self._pending, self._results = data["pending"], data["results"]
            except (ValueError, KeyError, TypeError) as exc:
                raise OracleConfigError(f"{state} is corrupt ({exc}); restore it from a backup") from None

    def __repr__(self) -> str:
        return f"ManualOracle(directory={str(self.directory)!r}, objectives={self.objectives})"

    @property
    def pending_path(self) -> Path:
        """Where ``submit`` exports the designs waiting for results."""
        return self.directory / f"pending.{self.export_format}"

    def _save(self) -> None:
        tmp = self.directory / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps({"pending": self._pending, "results": self._results}))
        os.replace(tmp, self.directory / STATE_FILE)

    # ---- the protocol --------------------------------------------------------------------------
    def submit(self, requests: Sequence[QueryRequest]) -> list[JobHandle]:
        """Record new keys and rewrite the pending export."""
        with self._lock:
            for r in requests:
                if r.key not in self._pending and r.key not in self._results:
                    design = np.asarray(r.design, dtype=np.float64)
                    self._pending[r.key] = {"design": design_to_json(design),
                                            "shape": list(design.shape) or [1],
                                            "metadata": dict(r.metadata), "submitted_at": time.time()}
            self._save()
            self.export_pending()
        return [JobHandle(key=r.key, job_id=r.key, metadata={"directory": str(self.directory)})
                for r in requests]

    def poll(self, handles: Sequence[JobHandle]) -> list[QueryResult]:
        """Imported results; pending while waiting; unknown for keys never submitted here."""
        out = []
        with self._lock:
            for h in handles:
                if h.key in self._results:
                    out.append(QueryResult(key=h.key, **self._results[h.key]))
                else:
                    out.append(QueryResult(key=h.key, status="pending" if h.key in self._pending
                                           else "unknown"))
        return out

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Withdraw designs still waiting (they leave the pending export)."""
        with self._lock:
            for h in handles:
                if self._pending.pop(h.key, None) is not None:
                    self._results[h.key] = {"status": "cancelled"}
            self._save()
            self.export_pending()

    def close(self) -> None:
        """Nothing to release: every change is already on disk."""

    # ---- export ------------------------------------------------------------------------------
    def export_pending(self, path: str | Path | None = None) -> Path:
        """Write the designs still waiting to ``path`` (default ``pending_path``); format from
        the suffix (``.csv`` / ``.json``)."""
        path = Path(path) if path else self.pending_path
        with self._lock:
            rows = list(self._pending.items())
        if path.suffix == ".json":
            # one design per line, so import errors point at the row a person edited
            items = [json.dumps({"key": k, "shape": p["shape"], "design": p["design"],
                                 "values": {o: None for o in self.objectives}, "error": None})
                     for k, p in rows]
            text = "[\n" + ",\n".join(items) + "\n]\n"
        else:
            width = max((int(np.prod(p["shape"])) for _, p in rows), default=0)
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(["key", "shape", *[f"x{i}" for i in range(width)],
                             *self.objectives, "error"])
            for key, p in rows:
                flat = np.asarray(p["design"], dtype=np.float64).reshape(-1).tolist()
                writer.writerow([key, "x".join(map(str, p["shape"])), *map(repr, flat),
                                 *[""] * (width - len(flat)), *[""] * len(self.objectives), ""])
            text = buf.getvalue()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return path

    # ---- import ------------------------------------------------------------------------------
    def _check_number(self, raw: Any, column: str, problems: list[str]) -> float | None:
        if isinstance(raw, str):
            raw = raw.strip()
            try:
                value = float(raw)
            except ValueError:
                problems.append(f"column {column!r}: {raw!r} is not a number")
                return None
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
            try:
                value = float(raw)
            except OverflowError:  # a JSON integer literal beyond float range
                problems.append(f"column {column!r}: integer {str(raw)[:40]}... is too large")
                return None
        else:
            problems.append(f"field {column!r}: {raw!r} is not a number")
            return None
        if not math.isfinite(value):
            problems.append(f"column {column!r}: {raw!r} is not finite")
            return None
        return value

    def _row(self, key: Any, values: dict[str, Any], noise: dict[str, Any], error: Any,
             seen: dict[str, int], line: int) -> tuple[list[str], dict[str, Any] | None]:
        """Problems of one row, and the result it carries (None: still blank)."""
        problems: list[str] = []
        blank = [o for o in self.objectives if values.get(o) in (None, "")]
        error = (error or "").strip() if isinstance(error, str) else error
        if not isinstance(key, str) or not key.strip():
            return ["the key is empty"], None
        key = key.strip()
        if key in seen:
            problems.append(f"key {key!r} appears again (first on line {seen[key]})")
        seen.setdefault(key, line)
        if key not in self._pending and key not in self._results:
            problems.append(f"key {key!r} is not a query of this oracle ({self._where}); "
                            f"was the file exported by another campaign?")
        if error and len(blank) < len(self.objectives):
            problems.append("both 'error' and objective values are filled; leave one empty")
        if error:
            return problems, {"status": "failed", "error": str(error)[:2000]}
        if len(blank) == len(self.objectives):
            return problems, None
        if blank:
            problems.append(f"objective(s) {blank} empty while others are filled; fill every "
                            f"objective, or none to leave the row pending")
        clean = {o: self._check_number(values[o], o, problems) for o in self.objectives
                 if o not in blank}
        clean_noise = {}
        for o, raw in noise.items():
            if raw in (None, ""):
                continue
            v = self._check_number(raw, f"noise_{o}", problems)
            if v is not None and v < 0:
                problems.append(f"column 'noise_{o}': {v} is negative; a variance is >= 0")
            clean_noise[o] = v
        done = self._results.get(key)
        result = {"status": "succeeded", "values": clean, "noise": clean_noise or None}
        if done is not None and not problems and done != result:
            problems.append(f"key {key!r} already has a different result; results are final")
        return problems, result

    def _parse_csv(self, text: str, path: str) -> list[tuple[int, Any, dict, dict, Any]]:
        fed = [0]  # physical lines handed to the csv module: the line an error is on

        def lines() -> Any:
            for physical in io.StringIO(text):
                fed[0] += 1
                yield physical
        reader = csv.DictReader(lines())
        try:
            return self._csv_records(reader, path)
        except csv.Error as exc:  # a cell over the field limit, a NUL byte, a stray quote
            line = max(1, fed[0])
            if "field larger than field limit" in str(exc):
                why = (f"a cell is longer than {MAX_CELL_CHARS:,} characters; a results cell "
                       "holds a number, a shape or a short error text")
            else:
                why = f"malformed CSV ({exc})"
            raise ManualResultsError(path, [(line, why)]) from None

    def _csv_records(self, reader: csv.DictReader, path: str
                     ) -> list[tuple[int, Any, dict, dict, Any]]:
        header = reader.fieldnames or []
        missing = [c for c in ("key", *self.objectives) if c not in header]
        if missing:
            raise ManualResultsError(path, [(1, f"header lacks column(s) {missing}; expected "
                                                f"key, {', '.join(self.objectives)} (and error)")])
        twice = sorted({c for c in header if header.count(c) > 1})
        if twice:
            raise ManualResultsError(path, [(1, f"header names column(s) {twice} more than once")])
        rows = []
        for record in reader:
            line = reader.line_num  # the record's (last) physical line; blank lines counted
            if None in record:
                cells = len(header) + len(record[None])
                raise ManualResultsError(path, [(line, f"more cells than header columns ({cells} "
                                                       f"cells, {len(header)} columns)")])
            short = [c for c in header if record.get(c) is None]
            if short:
                raise ManualResultsError(path, [(line, f"fewer cells than header columns "
                                                       f"({len(header) - len(short)} cells, "
                                                       f"{len(header)} columns; missing {short})")])
            if not any((v or "").strip() for v in record.values()):
                continue
            noise = {o: record.get(f"noise_{o}") for o in self.objectives}
            rows.append((line, record.get("key"), {o: record.get(o) for o in self.objectives},
                         noise, record.get("error")))
        return rows

    def _parse_json(self, text: str, path: str) -> list[tuple[int, Any, dict, dict, Any]]:
        rows = []
        for line, item in _json_rows(text, path):
            if not isinstance(item, dict):
                raise ManualResultsError(path, [(line, f"expected an object, got {type(item).__name__}")])
            values: dict = item["values"] if isinstance(item.get("values"), dict) else {}
            noise: dict = item["noise"] if isinstance(item.get("noise"), dict) else {}
            rows.append((line, item.get("key"), values, noise, item.get("error")))
        return rows

    def import_results(self, path: str | Path) -> ImportSummary:
        """Validate every row of a results file, then record them all (or nothing).

        Raises:
            ManualResultsError: listing each bad row with its line number.
        """
        path = Path(path)
        try:
            size = path.stat().st_size
            if size > MAX_RESULTS_BYTES:  # checked before reading: never load a huge file
                raise ManualResultsError(str(path), [(1, f"the file is {size:,} bytes, more than "
                                                         f"the {MAX_RESULTS_BYTES:,} a results "
                                                         "file may have; is it the right file?")])
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ManualResultsError(str(path), [(1, f"cannot read the file: {exc}")]) from None
        if not text.strip():
            raise ManualResultsError(str(path), [(1, "the file is empty; expected a header row")])
        parse = self._parse_json if path.suffix in (".json", ".jsonl") else self._parse_csv
        with self._lock:
            problems: list[tuple[int, str]] = []
            accepted: dict[str, dict[str, Any]] = {}
            pending_left: list[str] = []
            seen: dict[str, int] = {}
            try:
                parsed = parse(text, str(path))
            except RecursionError:  # JSON nested thousands deep
                raise ManualResultsError(str(path), [(1, "the JSON is nested too deeply")]) from None
            for line, key, values, noise, error in parsed:
                row_problems, result = self._row(key, values, noise, error, seen, line)
                problems += [(line, p) for p in row_problems]
                if not row_problems:
                    if result is None:
                        pending_left.append(key.strip())
                    else:
                        accepted[key.strip()] = result
            if problems:
                raise ManualResultsError(str(path), problems)
            for key, result in accepted.items():
                self._pending.pop(key, None)
                self._results[key] = result
            self._save()
            self.export_pending()
        return ImportSummary(
            path=str(path),
            succeeded=tuple(k for k, r in accepted.items() if r["status"] == "succeeded"),
            failed=tuple(k for k, r in accepted.items() if r["status"] == "failed"),
            still_pending=tuple(pending_left))
