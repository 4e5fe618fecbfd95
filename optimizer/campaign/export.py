"""Export a campaign's oracle queries (designs, results, screening values) as CSV, JSON or npy.

One row per oracle query, in creation order: the query's key, round, status, one column per
objective value and per objective noise, the surrogate's mean / std / acquisition when the
candidate was selected, the failure reason, the campaign the result came from (``source``) and
the design.

1. read the queries (with designs) of ``name``, filtered by status;
2. ``top=K``: keep the K best succeeded rows by the primary objective (``maximize``: largest
   first, ``minimize``: smallest first; ties keep creation order);
3. join each row with its candidate's screening values (:meth:`Storage.list_candidates`, once per
   round that has an exported row); ``surrogate_mean`` is given in the primary objective's
   orientation (the loop's surrogate maximizes: the stored mean is negated for ``minimize``);
   with ``[[constraints]]``, each row's constraint outputs follow the objective columns and a
   ``feasible`` column says whether every constraint holds; ``top`` ranks feasible rows first;
4. write: ``csv`` (``shape`` column like ``8x8`` and flattened ``x0..x{d-1}``), ``json``
   (``design`` nested, ``design_shape``) or ``npy`` (a folder: ``designs.npy``, `N x *shape`,
   the stored dtype bit for bit, plus ``rows.json`` / ``rows.csv`` in the same row order).

With two or more objectives a last column ``pareto`` is true for the campaign's succeeded
queries on its Pareto front (``optimizer.campaign.pareto_summary``), false for the others.

Numbers are written with Python's shortest round-trip repr, so ``float(cell)`` gives back the
stored float exactly (and float32 designs cast back to float32 bit for bit).

>>> with Storage.open("sqlite:///tiltloop.db") as st:                        # doctest: +SKIP
...     res = export_campaign(st, "demo", Path("best.csv"), format="csv",
...                           objectives=[("y", "maximize")], top=10)
>>> res.rows                                                                  # doctest: +SKIP
10
"""
from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np

from optimizer.campaign.config_constraints import ConstraintConfig, is_feasible, stored_constraints
from optimizer.errors import CampaignStateError, ConfigError, format_choice_error
from storage import Storage
from storage.models import QUERY_STATUSES

ExportFormat = Literal["csv", "json", "npy"]
FORMATS: tuple[str, ...] = ("csv", "json", "npy")
#: Columns before the objective columns, and after them (the design comes last).
LEAD_COLUMNS = ("key", "round", "status", "source")
TAIL_COLUMNS = ("surrogate_mean", "surrogate_std", "acquisition", "error")
#: columns that appear for some campaigns (constraints, several objectives) or in the JSON
RESERVED_COLUMNS = ("shape", "design", "design_shape", "pareto", "feasible")


@dataclass(frozen=True, eq=False)
class ExportRow:
    """One exported oracle query (``values`` / ``noise`` as stored, objective -> number)."""

    key: str
    round: int
    status: str
    source: str
    values: dict[str, float] | None
    noise: dict[str, float] | None
    surrogate_mean: float | None
    surrogate_std: float | None
    acquisition: float | None
    error: str | None
    design: np.ndarray
    #: every constraint holds on the values (None: no values, or a campaign without constraints)
    feasible: bool | None = None
    #: on the campaign's Pareto front (None with one objective)
    pareto: bool | None = None


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_campaign` wrote: ``path`` is None for stdout; ``columns`` are the
    metadata columns (the CSV adds ``shape`` and ``x0..x{d-1}``)."""

    path: Path | None
    format: str
    rows: int
    columns: tuple[str, ...]
    design_shape: tuple[int, ...] | None


def stored_objectives(storage: Storage, name: str) -> list[tuple[str, str]]:
    """``(name, direction)`` of each objective in the config JSON stored with campaign ``name``."""
    raw = storage.load_campaign(name).config.get("objectives")
    if not isinstance(raw, list) or not raw or not all(isinstance(o, dict) and o.get("name")
                                                       for o in raw):
        raise CampaignStateError(f"campaign {name!r}: its stored config has no usable `objectives` "
                                 f"list (got {raw!r:.120}); cannot name the value columns")
    return [(str(o["name"]), str(o.get("direction", "maximize"))) for o in raw]


def load_export_rows(
    storage: Storage,
    name: str,
    *,
    objectives: Sequence[tuple[str, str]],
    statuses: Sequence[str] | None = None,
    top: int | None = None,
    imported: Sequence[str] = (),
    constraints: Sequence[ConstraintConfig] | None = None,
) -> list[ExportRow]:
    """The rows :func:`export_campaign` writes (steps 1-3 of the module docstring);
    ``imported``: campaigns whose succeeded results warm-started this one (``history.import_from``)
    — their rows come too, each with ``source`` naming the campaign it came from;
    ``constraints``: default, those stored with the campaign."""
    cons = _constraints(storage, name, constraints)
    objectives = _check_objectives(objectives)
    primary, direction = objectives[0]
    if statuses is not None:
        bad = [s for s in statuses if s not in QUERY_STATUSES]
        if bad or not statuses:
            raise ConfigError(f"status: {list(statuses)!r} must be non-empty and among "
                              f"{', '.join(QUERY_STATUSES)}")
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ConfigError(f"top: expected an integer >= 1, got {top!r}")
        if statuses is not None and "succeeded" not in statuses:
            raise ConfigError(f"top ranks succeeded queries by {primary!r}, but status is "
                              f"{list(statuses)!r}; add succeeded or drop --top")
        statuses = ("succeeded",)
    queries = storage.list_queries(name, statuses=None if statuses is None else list(statuses),
                                   with_design=True)
    if statuses is None or "succeeded" in statuses:
        for source in imported:
            queries += storage.list_queries(source, statuses=("succeeded",), with_design=True)
    sign = 1.0 if direction == "maximize" else -1.0
    if top is not None:
        ranked = [q for q in queries if (q.values or {}).get(primary) is not None]
        # stable; feasible rows first when the campaign has constraints
        ranked.sort(key=lambda q: (bool(cons) and not is_feasible(q.values, cons),
                                   -sign * q.values[primary]))  # type: ignore[index]
        queries = ranked[:top]
    screening: dict[str, tuple[float | None, float | None, float | None]] = {}
    for campaign, r in sorted({(q.campaign, q.round_index) for q in queries}):
        for c in storage.list_candidates(campaign, r):
            if c.query_key is not None:
                mean = None if c.surrogate_mean is None else sign * c.surrogate_mean
                screening[c.query_key] = (mean, c.surrogate_std, c.acquisition)
    front = _front(storage, name, objectives)
    rows = []
    for q in queries:
        mean, std, acq = screening.get(q.key, (None, None, None))
        assert q.design is not None  # loaded with_design=True
        rows.append(ExportRow(key=q.key, round=q.round_index, status=q.status, source=q.campaign,
                              values=q.values, noise=q.noise, surrogate_mean=mean,
                              surrogate_std=std, acquisition=acq, error=q.error, design=q.design,
                              feasible=is_feasible(q.values, cons) if cons else None,
                              pareto=None if front is None else (q.key in front
                                                                 and q.campaign == name)))
    return rows


def _constraints(storage: Storage, name: str,
                 given: Sequence[ConstraintConfig] | None) -> list[ConstraintConfig]:
    if given is not None:
        return list(given)
    return stored_constraints(storage.load_campaign(name).config)


def _front(storage: Storage, name: str, objectives: Sequence[tuple[str, str]]) -> set[str] | None:
    """Keys of campaign ``name``'s Pareto front (None with one objective; feasible results
    only, ``pareto_summary.campaign_pareto``)."""
    if len(objectives) < 2:
        return None
    from optimizer.campaign.pareto_summary import campaign_pareto

    summary = campaign_pareto(storage, name)
    return set(summary["front"]) if summary else set()


def export_campaign(
    storage: Storage,
    name: str,
    out: Path | None,
    *,
    format: ExportFormat = "csv",  # noqa: A002 — the CLI's --format
    objectives: Sequence[tuple[str, str]],
    top: int | None = None,
    statuses: Sequence[str] | None = None,
    stream: TextIO | None = None,
    imported: Sequence[str] = (),
) -> ExportResult:
    """Write campaign ``name``'s queries to ``out`` (a file; a folder for ``npy``).

    Args:
        out: the file (csv / json) or folder (npy); None or ``Path("-")``: ``stream``
            (default stdout), csv and json only.
        objectives: ``(name, direction)`` per objective, primary first; direction is
            ``"maximize"`` or ``"minimize"`` (see :func:`stored_objectives`).
        top: keep the ``top`` best succeeded rows by the primary objective.
        statuses: keep only queries in these statuses (default: all).

    Raises:
        ConfigError: bad format / top / statuses / objectives.
        CampaignStateError: npy export of designs with different shapes or dtypes.
    """
    if format not in FORMATS:
        raise ConfigError(format_choice_error("format", format, FORMATS))
    to_stream = out is None or str(out) == "-"
    if to_stream and format == "npy":
        raise ConfigError("format=npy writes a folder (designs.npy, rows.json, rows.csv); "
                          "give --out DIR")
    cons = _constraints(storage, name, None)
    rows = load_export_rows(storage, name, objectives=objectives, statuses=statuses, top=top,
                            imported=imported, constraints=cons)
    # constraint outputs are value columns after the objectives, then `feasible`; `pareto` last
    objective_names = [o for o, _ in _check_objectives(objectives)]
    for c in cons:
        _check_column_name(c.name, "constraints")
    names = objective_names + [c.name for c in cons]
    columns = (*LEAD_COLUMNS, *names, *(f"noise_{o}" for o in names),
               *(("feasible",) if cons else ()), *TAIL_COLUMNS,
               *(("pareto",) if len(objective_names) > 1 else ()))
    shapes = {tuple(r.design.shape) for r in rows}
    shape = next(iter(shapes)) if len(shapes) == 1 else None
    if format == "npy":
        assert out is not None
        _write_npy(name, rows, names, columns, Path(out), len(cons))
    else:
        text = _csv_text(rows, names, columns, design=True) if format == "csv" else \
            json.dumps(_json_doc(name, rows, names, columns, design=True,
                                 n_constraints=len(cons)), indent=1) + "\n"
        if to_stream:
            (stream or sys.stdout).write(text)
        else:
            Path(out).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
            Path(out).write_text(text, encoding="utf-8")  # type: ignore[arg-type]
    return ExportResult(path=None if to_stream else Path(out), format=format,  # type: ignore[arg-type]
                        rows=len(rows), columns=columns, design_shape=shape)


def _check_objectives(objectives: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    objs = [(str(n), str(d)) for n, d in objectives]
    if not objs:
        raise ConfigError("objectives: need at least one (name, direction); the first is primary")
    for n, d in objs:
        if d not in ("maximize", "minimize"):
            raise ConfigError(f"objectives: direction of {n!r} is {d!r}; use maximize or minimize")
        _check_column_name(n, "objectives")
    return objs


def _check_column_name(name: str, field: str) -> None:
    """An objective or constraint output becomes a column: it may not shadow a fixed one."""
    if name in LEAD_COLUMNS + TAIL_COLUMNS + RESERVED_COLUMNS or re.fullmatch(r"x\d+", name):
        raise ConfigError(f"{field}: name {name!r} would collide with an export column")


def _cells(row: ExportRow, names: Sequence[str], columns: Sequence[str]) -> list[Any]:
    values, noise = row.values or {}, row.noise or {}
    return [row.key, row.round, row.status, row.source, *(values.get(o) for o in names),
            *(noise.get(o) for o in names), *((row.feasible,) if "feasible" in columns else ()),
            row.surrogate_mean, row.surrogate_std, row.acquisition, row.error,
            *((row.pareto,) if "pareto" in columns else ())]


def _csv_text(rows: Sequence[ExportRow], names: Sequence[str], columns: Sequence[str], *,
              design: bool) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    width = max((r.design.size for r in rows), default=0) if design else 0
    writer.writerow([*columns, *(["shape", *(f"x{i}" for i in range(width))] if design else [])])
    for r in rows:
        cells = ["" if c is None else c for c in _cells(r, names, columns)]
        if design:
            cells += ["x".join(map(str, r.design.shape)), *r.design.reshape(-1).tolist()]
        writer.writerow(cells)
    return buffer.getvalue()


def _json_doc(name: str, rows: Sequence[ExportRow], names: Sequence[str],
              columns: Sequence[str], *, design: bool, n_constraints: int = 0) -> dict[str, Any]:
    items = []
    for r in rows:
        item = dict(zip(columns, _cells(r, names, columns)))
        item["design_shape"] = list(r.design.shape)
        item["design_dtype"] = r.design.dtype.str
        if design:
            item["design"] = r.design.tolist()
        items.append(item)
    n_obj = len(names) - n_constraints  # the constraint outputs end the value names
    doc: dict[str, Any] = {"campaign": name, "objectives": list(names[:n_obj]), "rows": items}
    if n_constraints:
        doc["constraints"] = list(names[n_obj:])
    return doc


def _write_npy(name: str, rows: Sequence[ExportRow], names: Sequence[str],
               columns: Sequence[str], folder: Path, n_constraints: int = 0) -> None:
    kinds = {(tuple(r.design.shape), r.design.dtype.str) for r in rows}
    if len(kinds) > 1:
        raise CampaignStateError(
            f"campaign {name!r}: designs have different shapes / dtypes {sorted(kinds)[:4]}; "
            f"designs.npy needs one; use --format json (one nested design per row)")
    designs = np.stack([r.design for r in rows]) if rows else np.zeros((0,))
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "designs.npy", designs, allow_pickle=False)
    doc = _json_doc(name, rows, names, columns, design=False, n_constraints=n_constraints)
    (folder / "rows.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    (folder / "rows.csv").write_text(_csv_text(rows, names, columns, design=False),
                                     encoding="utf-8")
