"""Bad campaign configs, derived from one good base config, each knowing the field it breaks.

Used by ``tests/test_cli_bad_configs.py`` (each case: ``tiltloop run`` exits 2 with one message
naming the file and the field, no traceback, no campaign row) and by ``bench/bad_configs.py``
(the counts). Cases come from walking the config models, so a new field gets cases for free:

* wrong types for every leaf field (every oracle kind, ``oracle.retry``, ``[[objectives]]``);
* unknown keys in every table; a table given as a scalar;
* bad ``Literal`` / registry names; numbers that break a declared bound (-1, 1e308, 2**70,
  nan, inf, the bound itself for a strict one);
* empty strings, tables and arrays; unicode and SQL-looking names; missing required fields;
* cross-field rules; invalid TOML (and a file that is not UTF-8, UTF-16, nested too deeply or
  too big); booleans where numbers are meant.

    >>> cases = bad_cases()                        # doctest: +SKIP
    >>> cases[0].field, cases[0].write(tmp_dir)    # doctest: +SKIP
"""
from __future__ import annotations

import copy
import math
import sqlite3
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types as at
from pydantic import BaseModel

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_docs import _section_models, _strip_annotated, _union_args
from optimizer.campaign.config_oracle import KIND_MODELS

DB_PLACEHOLDER = "@@DB_URL@@"
SQL = "x'; DROP TABLE campaign; --"
UNICODE = "кампания-ü-漢字"

#: A small valid campaign: 2-d gmm-toy prior, BoTorch Branin oracle (no Ray: every case fails first).
BASE: dict[str, Any] = {
    "name": "bad-config-base",
    "seed": 1,
    "prior": {"name": "gmm-toy"},
    "oracle": {"kind": "botorch", "function": "branin"},
    "objectives": [{"name": "y"}],
    "sampler": {"alpha": 1.0, "num_steps": 8},
    "workers": {"count": 1, "particles_per_worker": 16, "cpus_per_worker": 0.5},
    "budget": {"q": 2, "total": 4, "poll_interval_s": 0.05},
    "storage": {"url": DB_PLACEHOLDER},
    # a cheap evaluator, so that every [[oracles]] field gets its bad values too
    "oracles": [{"name": "sim", "cost": 0.05, "per_round": 2,
                 "oracle": {"kind": "botorch", "function": "branin"}}],
}

#: The config's arrays of tables (``[[objectives]]`` …): their fields are named with the index.
LISTS = ("objectives", "oracles", "constraints")

#: A valid ``[oracle]`` table per kind (other kinds' fields are tested on these).
ORACLE_BASES: dict[str, dict[str, Any]] = {
    "botorch": {"kind": "botorch", "function": "branin"},
    "http": {"kind": "http", "base_url": "http://127.0.0.1:9/"},
    "command": {"kind": "command", "argv": ["python3", "sim.py"]},
    "callable": {"kind": "callable", "target": "math:sqrt"},
    "manual": {"kind": "manual", "directory": "manual-dir"},
    "digits": {"kind": "digits"},
    "manifold": {"kind": "manifold"},
    "pull": {"kind": "pull"},
}

#: Values that a config accepts by its declared rules but that no run can use: each should be
#: refused before anything is written (see the xfail reasons in the test).
PROBES: list[tuple[str, tuple[Any, ...], Any, str]] = [
    ("budget.total", ("budget", "total"), 2**70, "2**70"),
    ("workers.particles_per_worker", ("workers", "particles_per_worker"), 2**70, "2**70"),
    ("workers.cpus_per_worker", ("workers", "cpus_per_worker"), 1e308, "1e308"),
    ("sampler.chunk_size", ("sampler", "chunk_size"), 2**70, "2**70"),
    ("oracle.seed", ("oracle", "seed"), 2**70, "2**70"),
    ("oracle.function", ("oracle", "function"), "", "empty"),
    ("oracle.function", ("oracle", "function"), SQL, "sql"),
    ("budget.stop_target", ("budget", "stop_target"), math.nan, "nan"),
    ("ray.address", ("ray", "address"), SQL, "sql"),
]


@dataclass(frozen=True)
class BadCase:
    """One bad config: ``field`` is the dotted name the message must contain (None: a file-level
    problem such as bad TOML, where ``words`` must appear instead)."""

    id: str
    category: str
    field: str | None
    data: dict[str, Any] | None = None
    raw: bytes | None = None  # the file's bytes, for syntax cases
    words: str = ""

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Write ``folder/campaign.toml`` (storage in ``folder/campaign.db``); both paths."""
        db = folder / "campaign.db"
        path = folder / "campaign.toml"
        if self.raw is not None:
            path.write_bytes(self.raw.replace(DB_PLACEHOLDER.encode(), f"sqlite:///{db}".encode()))
        else:
            assert self.data is not None
            path.write_text(dumps(self.data).replace(DB_PLACEHOLDER, f"sqlite:///{db}"),
                            encoding="utf-8")
        return path, db


# ---- a tiny TOML writer (any value, including wrong types and nan/inf) -----------------------
def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _key(k: str) -> str:
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else _value(k)


def dumps(data: dict[str, Any]) -> str:
    """TOML text: scalars first, then ``[tables]`` and ``[[arrays of tables]]``."""
    head, tail = [], []
    for k, v in data.items():
        if isinstance(v, dict):
            tail.append(f"[{_key(k)}]\n" + "".join(f"{_key(a)} = {_value(b)}\n" for a, b in v.items()))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                tail.append(f"[[{_key(k)}]]\n"
                            + "".join(f"{_key(a)} = {_value(b)}\n" for a, b in item.items()))
        else:
            head.append(f"{_key(k)} = {_value(v)}\n")
    return "".join(head) + "\n" + "\n".join(tail)


# ---- edits of the base -------------------------------------------------------------------------
#: The base of the ``[[constraints]]`` fields' cases: a lab reporting the constraint's output
#: too, and no cheap evaluator (the two are not combined yet).
CONSTRAINED = "constrained"


def _base(oracle_kind: str = "botorch") -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    if oracle_kind == CONSTRAINED:
        data["oracle"] = {"kind": "http", "base_url": "http://127.0.0.1:9/", "objectives": ["y", "tox"]}
        data.pop("oracles")
        data["constraints"] = [{"name": "tox", "op": "<=", "bound": 0.2}]
        return data
    data["oracle"] = copy.deepcopy(ORACLE_BASES[oracle_kind])
    return data


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    node: Any = data
    for part in path[:-1]:
        if isinstance(node, dict) and part not in node:
            node[part] = {}
        node = node[part]
    node[path[-1]] = value
    return data


def _drop(data: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    node.pop(path[-1], None)
    return data


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


# ---- walking the models ------------------------------------------------------------------------
def _leaves(model: type[BaseModel], path: tuple[Any, ...]):  # type: ignore[no-untyped-def]
    """(data path, annotation, FieldInfo) of every leaf; sections are (path, None, model)."""
    for name, info in model.model_fields.items():
        sub = path + (name,)
        nested = _section_models(info.annotation)
        if nested is None:
            yield sub, info.annotation, info
        elif nested[0] == "table":
            yield sub, None, nested[1][0]
            yield from _leaves(nested[1][0], sub)
        elif nested[0] == "array":
            yield sub, None, nested[1][0]
            yield from _leaves(nested[1][0], sub + (0,))
        # unions (oracle, feature_map) are walked per kind by the caller


def _kind(annotation: Any) -> str:
    tp = _strip_annotated(annotation)
    args = _union_args(tp)
    if args is not None:
        real = [a for a in args if a is not type(None)]
        if len(real) == 1:
            return _kind(real[0])
        return "union:" + ",".join(sorted(_kind(a) for a in real))
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "literal"
    if origin in (list, tuple):
        return "list"
    if origin is dict:
        return "dict"
    return {str: "str", Path: "str", int: "int", float: "float", bool: "bool"}.get(tp, "other")


_WRONG: dict[str, list[Any]] = {
    "str": [42, True, ["a"], {"a": 1}],
    "literal": [5, False, ["auto"]],
    "int": ["seven", 1.5, [1], True],  # a boolean is no number (lax pydantic made true 1)
    "float": ["fast", [1.0], {"a": 1.0}, False],
    "bool": ["maybe", 1.5, [True]],
    "list": ["x", 5, {"a": 1}],
    "dict": ["x", [1], 3],
    "table": ["x", 5, [1]],
}


def _wrong_values(kind: str) -> list[Any]:
    if kind.startswith("union:"):
        parts = kind.removeprefix("union:").split(",")
        if "bool" in parts and "str" in parts:  # verify: bool | str
            return [5, ["a"], {"a": 1}]
        if "float" in parts and "list" in parts:  # alpha: float | list[float]
            return ["x", ["a"], {"a": 1}, True, [1.0, True]]
        if "bool" in parts and "list" in parts:  # maximize: bool | tuple[bool, ...]
            return ["maybe", [2.5], {"a": 1}]
        return [{"a": 1}]
    return _WRONG.get(kind, [{"a": 1}])


def _violations(info: Any, kind: str) -> list[Any]:
    """-1, 1e308, 2**70, nan, inf and the bounds themselves, where a declared bound refuses them."""
    bounds = {type(m): m for m in info.metadata if isinstance(m, (at.Ge, at.Gt, at.Le, at.Lt))}
    if not bounds:
        return []
    cands: list[Any] = [-1, 2**70] if kind == "int" else [-1.0, 1e308, -1e308, math.nan, math.inf]
    for m in bounds.values():
        v = getattr(m, {at.Ge: 'ge', at.Gt: 'gt', at.Le: 'le', at.Lt: 'lt'}[type(m)])
        if isinstance(m, at.Gt) or isinstance(m, at.Lt):
            cands.append(v)
        cands.append(v - 1 if isinstance(m, (at.Ge, at.Gt)) else v + 1)

    def refused(x: Any) -> bool:
        if isinstance(x, float) and math.isnan(x):
            return True
        ok = all((not isinstance(m, at.Ge) or x >= m.ge) and (not isinstance(m, at.Gt) or x > m.gt)
                 and (not isinstance(m, at.Le) or x <= m.le) and (not isinstance(m, at.Lt) or x < m.lt)
                 for m in bounds.values())
        return not ok

    out: list[Any] = []
    for x in cands:
        if kind == "int" and isinstance(x, float):
            continue
        if refused(x) and not any(_same(x, y) for y in out):
            out.append(x)
    return out


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return type(x) is type(y) and x == y


def _short(v: Any) -> str:
    return _value(v)[:24]


def bad_cases() -> list[BadCase]:
    """Every generated bad config (ids are unique and stable)."""
    cases: list[BadCase] = []

    def add(category: str, field: str | None, data: dict[str, Any] | None = None, *,
            raw: bytes | None = None, words: str = "", tag: str = "") -> None:
        cid = f"{category}:{field}:{tag}" if tag else f"{category}:{field}"
        n = sum(1 for c in cases if c.id.split("#")[0] == cid)
        cases.append(BadCase(f"{cid}#{n}" if n else cid, category, field, data, raw, words))

    # Leaves: the campaign's own sections, then each oracle kind and feature-map kind.
    walks: list[tuple[str, type[BaseModel], tuple[Any, ...]]] = [("botorch", CampaignConfig, ())]
    walks += [(k, m, ("oracle",)) for k, m in KIND_MODELS.items()]
    tables: list[tuple[str, tuple[Any, ...]]] = [("botorch", ())]
    for walk_kind, model, prefix in walks:
        for path, annotation, info in _leaves(model, prefix):
            kind = CONSTRAINED if path[:1] == ("constraints",) else walk_kind
            dotted = _dotted(path)
            if annotation is None:  # a section
                tables.append((kind, path if path[-1] not in LISTS else path + (0,)))
                for v in _wrong_values("table"):
                    add("wrong-type", dotted, _set(_base(kind), path, v), tag=_short(v))
                continue
            if path[-1] == "kind" and prefix:  # the discriminator: bad tags below
                continue
            k = _kind(annotation)
            for v in _wrong_values(k):
                add("wrong-type", dotted, _set(_base(kind), path, v), tag=_short(v))
            for v in _violations(info, k):
                add("out-of-range", dotted, _set(_base(kind), path, v), tag=_short(v))
            if k == "literal":
                for v in ("bogus", "", "AUTO", UNICODE):
                    add("bad-choice", dotted, _set(_base(kind), path, v), tag=_short(v))
    for kind in ORACLE_BASES:
        tables.append((kind, ("oracle",)))
    tables.append(("http", ("oracle", "retry")))
    tables += [("botorch", ("feature_map",))]
    tables = list(dict.fromkeys(tables))  # oracle.retry comes from the walk and from above

    # Unknown keys in every table.
    for kind, path in tables:
        for key in ("bogus", "alpah", UNICODE, SQL):
            data = _base(kind)
            if path and path[0] == "feature_map":
                data["feature_map"] = {"kind": "identity"}
            if path == ("oracle", "retry"):
                data["oracle"]["retry"] = {"max_attempts": 2}
            _set(data, path + (key,), 1)
            field = _dotted(tuple(p for p in path if not isinstance(p, int)) + (key,)) \
                if path[:1] not in tuple((name,) for name in LISTS) else _dotted(path + (key,))
            add("unknown-key", field, data, tag=_short(key))

    # Bad names in registries and union tags.
    for v in ("nope", "", UNICODE, SQL, "Systematic"):
        add("bad-choice", "sampler.resampling", _set(_base(), ("sampler", "resampling"), v), tag=_short(v))
        add("bad-choice", "sampler.tempering", _set(_base(), ("sampler", "tempering"), v), tag=_short(v))
        add("bad-choice", "oracle.kind", _set(_base(), ("oracle", "kind"), v), tag=_short(v))
        add("bad-choice", "feature_map.kind", _set(_base(), ("feature_map",), {"kind": v}), tag=_short(v))
    for v in (5, True, ["http"]):
        add("bad-choice", "oracle.kind", _set(_base(), ("oracle", "kind"), v), tag=_short(v))

    # Names: empty, unicode, SQL-looking, too long.
    for v in ("", UNICODE, SQL, "-leading-dash", "a" * 129, "with space"):
        add("bad-name", "name", _set(_base(), ("name",), v), tag=_short(v))
        add("bad-name", "history.import_from", _set(_base(), ("history", "import_from"), [v]), tag=_short(v))
    for v in (UNICODE, SQL, "./no/such/prior"):
        add("bad-name", "prior.name", _set(_base(), ("prior", "name"), v), tag=_short(v))
    for v in ("", "a" * 129):
        add("bad-name", "objectives.0.name", _set(_base(), ("objectives", 0, "name"), v), tag=_short(v))
    for v in (UNICODE, SQL):  # the oracle reports "y" only
        data = _set(_base(), ("objectives", 0, "name"), v)
        add("bad-name", "oracle", _set(data, ("oracle", "objective"), "y"), tag=_short(v))
    for v in ("", "mysql://db", SQL, "sqlite:/relative.db"):
        add("bad-name", "storage.url", _set(_base(), ("storage", "url"), v), tag=_short(v))
    for v in ("not a target", SQL, "", "no_colon"):
        add("bad-name", "oracle.target", _set(_base("callable"), ("oracle", "target"), v), tag=_short(v))

    # Empty tables / arrays.
    add("empty", "objectives", _set(_base(), ("objectives",), []))
    add("empty", "objectives.0.name", _set(_base(), ("objectives",), [{}]), tag="[{}]")
    add("empty", "oracle.kind", _set(_base(), ("oracle",), {}))
    add("empty", "prior.name", _set(_base(), ("prior",), {}))
    add("empty", "sampler.alpha", _set(_base(), ("sampler", "alpha"), []))
    add("empty", "oracle.objectives", _set(_base("http"), ("oracle", "objectives"), []))
    add("empty", "oracle.argv", _set(_base("command"), ("oracle", "argv"), []))
    add("empty", "feature_map.kind", _set(_base(), ("feature_map",), {}))

    # Missing required fields.
    for path, kind in [(("name",), "botorch"), (("prior",), "botorch"), (("oracle",), "botorch"),
                       (("objectives",), "botorch"), (("prior", "name"), "botorch"),
                       (("oracle", "kind"), "botorch"), (("oracle", "base_url"), "http"),
                       (("oracle", "argv"), "command"), (("oracle", "target"), "callable"),
                       (("oracle", "directory"), "manual"), (("objectives", 0, "name"), "botorch")]:
        add("missing", _dotted(path), _drop(_base(kind), path))

    # Cross-field rules.
    add("cross", "budget", _set(_base(), ("budget", "total"), 1))
    add("cross", "budget", _set(_base(), ("budget", "max_in_flight"), 1))
    add("cross", "workers.particles_per_worker",
        _set(_set(_base(), ("budget", "q"), 64), ("budget", "total"), 64))
    add("cross", "objectives", _set(_base("http"), ("objectives",), [{"name": "y"}, {"name": "y"}]))
    add("cross", "history.import_from", _set(_base(), ("history", "import_from"), ["bad-config-base"]))
    add("cross", "history.import_from", _set(_base(), ("history", "import_from"), ["a", "a"]))
    add("cross", "surrogate.seed", _set(_base(), ("surrogate", "seed"), 3))
    add("cross", "surrogate.maximize", _set(_base(), ("surrogate", "maximize"), False))
    add("cross", "surrogate", _set(_base(), ("surrogate", "fit_subset_size"), 5000))
    add("cross", "surrogate", _set(_base(), ("surrogate", "weights"), [-1.0]))
    add("cross", "oracle.env.API_TOKEN", _set(_base("command"), ("oracle", "env"), {"API_TOKEN": "x"}))
    add("cross", "oracle", _set(_base(), ("oracle", "objective"), "other"))

    # Values inside the declared rules that no run can use (expected to fail; see PROBES).
    for field, path, v, tag in PROBES:
        add("probe", field, _set(_base(), path, v), tag=tag)

    # Not TOML at all.
    good = dumps(_base())
    syntax = {
        "unclosed-string": good.replace('"gmm-toy"', '"gmm-toy'),
        "missing-key": good + "\n= 1\n",
        "duplicate-key": good.replace("seed = 1\n", "seed = 1\nseed = 2\n"),
        "unclosed-table": good.replace("[sampler]", "[sampler"),
        "duplicate-table": good + "\n[sampler]\nnum_steps = 3\n",
        "bare-word": good.replace("seed = 1", "seed = one"),
        "trailing-comma-inline": good + '\n[ray]\naddress = { a = 1, }\n',
        "unterminated-array": good.replace('[history]', '').replace("seed = 1", "seed = [1, 2"),
        "garbage": "<<<not toml>>>\n",
        "nul-byte": good.replace("seed = 1", "seed = \x00"),
    }
    for tag, text in syntax.items():
        add("syntax", None, raw=text.encode("utf-8"), words="is not valid TOML", tag=tag)
    add("syntax", None, raw=good.encode("utf-8").replace(b"gmm-toy", b"gmm-\xff\xfe"),
        words="cannot be read", tag="not-utf8")
    add("syntax", None, raw=b"", words="required field is missing", tag="empty-file")
    # Encodings, nesting and size (config_io.read_toml's limits).
    add("syntax", None, raw=good.encode("utf-16"), words="UTF-16", tag="utf-16")
    add("syntax", None, raw=good.encode("utf-16-be"), words="UTF-16", tag="utf-16-be-no-bom")
    for depth in (40, 100_000):
        add("syntax", None, raw=(f"deep = {'[' * depth}{']' * depth}\n" + good).encode(),
            words="nested", tag=f"nested-{depth}")
    add("syntax", None, raw=("x = " + "{a = " * 30 + "1" + "}" * 30 + "\n" + good).encode(),
        words="nested", tag="nested-inline-tables")
    add("syntax", None, raw=(good + "#" * (1024 * 1024) + "\n").encode(), words="bytes, more than",
        tag="oversized")
    return cases


# ---- checking one outcome ----------------------------------------------------------------------
def campaign_rows(db: Path) -> int:
    """Rows in the ``campaign`` table (0 when the file or the table does not exist)."""
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM campaign").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def problems(case: BadCase, path: Path, db: Path, code: int | None, out: str, err: str,
             elapsed_s: float) -> list[str]:
    """Everything wrong with how ``tiltloop run`` handled ``case`` (empty: as it should)."""
    found = []
    if code != 2:
        found.append(f"exit code {code}, expected 2")
    if "Traceback" in out + err:
        found.append("a traceback was printed")
    if not err.startswith("tiltloop run: ") or err.count("tiltloop run:") != 1:
        found.append(f"stderr is not one `tiltloop run:` message: {err[:300]!r}")
    if str(path) not in err:
        found.append("the message does not name the file")
    if case.field is not None and f"`{case.field}" not in err:
        found.append(f"the message does not name the field `{case.field}`: {err[:400]!r}")
    if case.words and case.words not in err:
        found.append(f"the message lacks {case.words!r}: {err[:300]!r}")
    rows = campaign_rows(db)
    if rows:
        found.append(f"{rows} campaign row(s) written")
    return found  # elapsed_s is reported by bench/bad_configs.py, never asserted (load varies)


class ReachedRay(RuntimeError):
    """Raised instead of starting Ray: a bad config got past every check."""


def refuse_ray(config: Any) -> Any:
    """Stand-in for ``optimizer.campaign.service.ray_runtime`` while running bad cases."""
    raise ReachedRay(f"campaign {config.name!r} reached ray_runtime (after the campaign row was "
                     "written): the config passed validation and preflight")


@dataclass(frozen=True)
class Outcome:
    """How one case went: exit code, the two streams, campaign rows, seconds, what was wrong."""

    case: BadCase
    code: int | None
    out: str
    err: str
    rows: int
    elapsed_s: float
    problems: tuple[str, ...]


def run_case(case: BadCase, folder: Path) -> Outcome:
    """``tiltloop run`` on ``case`` in-process (Ray replaced by :func:`refuse_ray`)."""
    import contextlib
    import io
    import time
    import traceback

    from optimizer import cli
    from optimizer.campaign import service

    path, db = case.write(folder)
    out, err = io.StringIO(), io.StringIO()
    saved = service.ray_runtime
    service.ray_runtime = refuse_ray
    start = time.perf_counter()
    code: int | None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["run", str(path)])
    except BaseException:  # noqa: BLE001 - the point is to see what escapes
        code = None
        err.write(traceback.format_exc())
    finally:
        service.ray_runtime = saved
    elapsed = time.perf_counter() - start
    found = problems(case, path, db, code, out.getvalue(), err.getvalue(), elapsed)
    return Outcome(case, code, out.getvalue(), err.getvalue(), campaign_rows(db), elapsed, tuple(found))
