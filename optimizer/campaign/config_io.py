"""Reading and writing campaign configs: TOML in, clear errors out, TOML back, ``--set`` overrides.

Relative paths in a config file resolve against **the file's folder**, not the shell's: the prior
folder, ``oracle.cwd`` (a ``command`` oracle runs there; default: the config's folder, so
``argv = ["python3", "sim.py"]`` finds ``sim.py`` beside the config), ``oracle.directory``
(manual), ``oracle.token_file`` / a CA bundle in ``oracle.verify`` (http), and a SQLite
``storage.url``. The stored snapshot holds the absolute paths, so ``resume`` works from anywhere.

    >>> cfg = load_config("campaigns/hartmann.toml")                         # doctest: +SKIP
    >>> cfg2 = apply_overrides(cfg, ["sampler.alpha=0.05", "budget.total=512"])  # doctest: +SKIP
"""
from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from optimizer.campaign.config import (_SECRET_NAME, _TAG_RE, CampaignConfig, IdentityFeatures,
                                       PriorFeatures)
from optimizer.campaign.config_oracle import KIND_MODELS, flatten_legacy
from optimizer.campaign.oracle_allow import consent
from optimizer.errors import CampaignConfigError
from tiltloop.toml import tomllib

#: Oracle fields that hold a path, per kind.
_ORACLE_PATHS = {"manual": ("directory",), "http": ("token_file",), "command": ("cwd",)}
#: Sections whose loc carries the union tag after the section name (dropped from field names).
_UNIONS = {"oracle": set(KIND_MODELS),
           "feature_map": {m.model_fields["kind"].default for m in (PriorFeatures, IdentityFeatures)}}


def _hide_value(e: Mapping[str, Any], field: str) -> bool:
    """Never echo an unknown field's value (it may be a token put in the wrong place) nor the
    value of a field named like a secret."""
    return e["type"] == "extra_forbidden" or bool(_SECRET_NAME.search(field))


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in _UNIONS and parts[1] in _UNIONS[parts[0]]:
        del parts[1]  # ("oracle", "http", "base_url") -> oracle.base_url
    return ".".join(parts) or "(top level)"


def format_errors(err: ValidationError, source: str) -> str:
    """One line per problem: the dotted field, the rule and (when safe) the value."""
    lines = [f"invalid campaign config {source}:"]
    for e in err.errors():
        field = _field_name(tuple(e["loc"]))
        msg = e["msg"].removeprefix("Value error, ")
        tagged = _TAG_RE.match(msg)  # "[field] message" from a cross-field validator
        if tagged:
            field, msg = tagged.group(1), tagged.group(2)
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            ctx = e.get("ctx", {})
            what = f"unknown {field} kind {ctx.get('tag')!r}" if e["type"] == "union_tag_invalid" \
                else f"`{field}.kind` is missing"
            msg = f"{what}; choose one of: {ctx.get('expected_tags', '')}"
            field = f"{field}.kind"
            e = {**e, "input": None, "type": "missing"}  # the tag is in the message already
        elif e["type"] == "extra_forbidden":
            msg = "unknown field (a typo?); remove it or check the spelling against docs/config.md"
        elif e["type"] == "missing":
            msg = "required field is missing"
        value = e.get("input")
        if e["type"] == "missing" or isinstance(value, dict) or tagged:
            shown = ""
        elif _hide_value(e, field):
            shown = " (value not shown)"
        else:
            shown = f" (got {value!r:.120})"
        lines.append(f"  field `{field}`: {msg.replace(chr(10), '; ')}{shown}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<dict>") -> CampaignConfig:
    """Validate a config dict; raise :class:`CampaignConfigError` naming ``source`` and each field."""
    if not isinstance(data, dict):
        raise CampaignConfigError(f"invalid campaign config {source}: expected a table of settings, "
                                  f"got {type(data).__name__}")
    # a cheap oracle's log campaign carries its parent's marker (config_fidelity.MARKER)
    data = {k: v for k, v in data.items() if k != "fidelity_parent"}
    # before the models: a cross-field rule must not report `total = true` as "total 1 < q"
    coerced = _booleans_as_numbers(data, CampaignConfig)
    if coerced:
        raise CampaignConfigError("\n".join(
            [f"invalid campaign config {source}:"]
            + [f"  field `{field}`: expected a number, got the boolean {str(v).lower()}; write a "
               f"number (true is not 1)" for field, v in coerced]))
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as err:
        raise CampaignConfigError(format_errors(err, source)) from None


def _booleans_as_numbers(raw: Any, annotation: Any, path: str = "") -> list[tuple[str, bool]]:
    """Where ``raw`` holds a boolean for a field typed as a number (int / float, not bool).

    Pydantic's lax mode turns ``true`` into ``1`` for an int or float field (``workers.count =
    true`` would run one worker). Walking the input beside the models' annotations catches it in
    every section at once (unions, discriminated ``kind`` tables and lists included), without
    making every model strict (which would also refuse a path string, or a list for a tuple)."""
    tp = annotation
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    origin = typing.get_origin(tp)
    if origin is Union or isinstance(tp, types.UnionType):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
    else:
        members = [tp]
    here = path or "(top level)"
    if isinstance(raw, bool):
        numeric = any(m in (int, float) for m in members)
        return [(here, raw)] if numeric and bool not in members else []
    found: list[tuple[str, bool]] = []
    for m in members:
        m_origin = typing.get_origin(m)
        if isinstance(raw, dict) and isinstance(m, type) and issubclass(m, BaseModel):
            kind = m.model_fields.get("kind")
            if len(members) > 1 and kind is not None and \
                    raw.get("kind") not in (typing.get_args(kind.annotation) or (kind.default,)):
                continue  # another member of a discriminated union
            for key, value in flatten_legacy(raw).items():
                if isinstance(key, str) and key in m.model_fields:
                    found += _booleans_as_numbers(value, m.model_fields[key].annotation,
                                                  f"{path}.{key}" if path else key)
            return found
        if isinstance(raw, list) and m_origin in (list, tuple):
            args = typing.get_args(m)
            for i, value in enumerate(raw):
                item = args[0] if m_origin is list or (len(args) == 2 and args[1] is Ellipsis) \
                    else (args[i] if i < len(args) else None)
                found += _booleans_as_numbers(value, item, f"{path}.{i}" if path else str(i))
            return found
        if isinstance(raw, dict) and m_origin is dict:
            args = typing.get_args(m)
            for key, value in raw.items():
                found += _booleans_as_numbers(value, args[1] if args else None, f"{path}.{key}")
            return found
    return found


def _resolve(base: Path, value: Any) -> Any:
    if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
        return str((base / Path(value).expanduser()).resolve())
    return value


def _resolve_oracle(oracle: Any, base: Path) -> Any:
    """An ``[oracle]`` table with its relative paths made absolute against ``base``."""
    oracle = flatten_legacy(oracle)
    if not isinstance(oracle, dict):
        return oracle
    oracle = dict(oracle)
    kind = oracle.get("kind")
    if kind == "command" and oracle.get("cwd") is None:
        oracle["cwd"] = str(base.resolve())
    for key in _ORACLE_PATHS.get(str(kind), ()):
        if key in oracle:
            oracle[key] = _resolve(base, oracle[key])
    if kind == "http" and isinstance(oracle.get("verify"), str):
        oracle["verify"] = _resolve(base, oracle["verify"])
    return oracle


def resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """``data`` with its relative paths made absolute against ``base`` (see the module doc)."""
    from optimizer.priors.registry import BUNDLED

    data = dict(data)
    prior = data.get("prior")
    if isinstance(prior, dict) and isinstance(prior.get("name"), str) and prior["name"] not in BUNDLED:
        data["prior"] = {**prior, "name": _resolve(base, prior["name"])}
    if "oracle" in data:
        data["oracle"] = _resolve_oracle(data["oracle"], base)
    if isinstance(data.get("oracles"), list):  # cheap oracles: the same paths, the same way
        data["oracles"] = [{**o, "oracle": _resolve_oracle(o.get("oracle"), base)}
                           if isinstance(o, dict) and "oracle" in o else o for o in data["oracles"]]
    storage = data.get("storage")
    if isinstance(storage, dict) and isinstance(storage.get("url"), str) \
            and storage["url"].startswith("sqlite:///"):
        path = storage["url"].removeprefix("sqlite:///")
        if path and path != ":memory:" and not path.startswith("/"):
            data["storage"] = {**storage, "url": "sqlite:///" + _resolve(base, path)}
    return data


#: A campaign config is a few kilobytes; a bigger file is a mistake (or an attack on the parser).
MAX_CONFIG_BYTES = 1024 * 1024
#: Tables and arrays nest at most this deep (a campaign config needs 4).
MAX_CONFIG_DEPTH = 16
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of tables and arrays, counted up to ``limit + 1`` (never recursing deeper)."""
    stack, deepest = [(value, 0)], 0
    while stack:
        node, d = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, d + 1)
            if deepest > limit:
                return deepest
            stack.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def read_toml(path: str | Path) -> dict[str, Any]:
    """The raw table of a TOML file; errors name the file (and the line, for bad TOML).

    The file is read as UTF-8 (a byte-order mark is accepted); a UTF-16 file, a file over
    :data:`MAX_CONFIG_BYTES` (checked before reading) and tables or arrays nested deeper than
    :data:`MAX_CONFIG_DEPTH` are refused with a message, never a traceback.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise CampaignConfigError(
                f"campaign config {p} is {size:,} bytes, more than the {MAX_CONFIG_BYTES:,} a "
                "config may have; is this the right file?")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise CampaignConfigError(
            f"campaign config {p} does not exist; give the path of a .toml file") from None
    except OSError as exc:
        raise CampaignConfigError(f"campaign config {p} cannot be read: {exc}") from None
    # UTF-16 with a byte-order mark, or without one (an ASCII first character beside a NUL)
    if raw.startswith(_UTF16_BOMS) or (len(raw) >= 2 and (raw[0] == 0) != (raw[1] == 0)):
        raise CampaignConfigError(
            f"campaign config {p} cannot be read: it is UTF-16 text; TOML is UTF-8: save it "
            "as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`, or \"UTF-8\" in the editor's save dialog)")
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark (Windows editors) is accepted
    except UnicodeDecodeError as exc:
        raise CampaignConfigError(f"campaign config {p} cannot be read: it is not UTF-8 text "
                                  f"({exc}); save it as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignConfigError(f"campaign config {p} is not valid TOML: {exc}") from None
    except RecursionError:
        raise CampaignConfigError(f"campaign config {p}: tables or arrays are nested too deeply "
                                  f"(a config nests at most {MAX_CONFIG_DEPTH} levels)") from None
    if _depth(data, MAX_CONFIG_DEPTH + 1) > MAX_CONFIG_DEPTH + 1:  # +1: the file's own table
        raise CampaignConfigError(f"campaign config {p}: tables or arrays are nested more than "
                                  f"{MAX_CONFIG_DEPTH} levels deep; a config needs a few")
    return data


def load_config(path: str | Path) -> CampaignConfig:
    """Read and validate a campaign TOML file (relative paths resolved against its folder).

    Raises:
        CampaignConfigError: the file is missing, is not TOML, or a field is invalid; the message
            names the file and every bad field with its value.
    """
    p = Path(path)
    config = parse_config(resolve_paths(read_toml(p), p.parent.resolve()), str(p))
    # The operator named this file: its code-executing oracle may run in this process (see
    # optimizer.campaign.oracle_allow; a config read back from the database needs the allowlist).
    consent(config.oracle)
    for cheap in config.oracles:  # the cheap evaluators of the same file, likewise
        consent(cheap.oracle)
    return config


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: a string


def apply_overrides(config: CampaignConfig, assignments: list[str], *,
                    source: str = "--set") -> CampaignConfig:
    """A copy of ``config`` with ``key.path=value`` assignments (values in TOML syntax; a bare
    word is a string), validated as a whole.

    Raises:
        CampaignConfigError: a malformed assignment, a path into a non-table, or an invalid result.
    """
    data = config.to_json_dict()
    for item in assignments:
        key, sep, raw = item.partition("=")
        path = [p for p in key.strip().split(".") if p]
        if not sep or not path:
            raise CampaignConfigError(f"{source} {item!r}: expected KEY=VALUE, e.g. sampler.alpha=0.05")
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise CampaignConfigError(
                    f"{source} {item!r}: `{'.'.join(path[:i + 1])}` is not a table of settings")
            node = child
        node[path[-1]] = _parse_value(raw.strip())
    return parse_config(data, source)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        items = [f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(config: CampaignConfig) -> str:
    """The config as a TOML file that :func:`load_config` reads back to an equal config."""
    data = config.to_json_dict()
    head, tables, arrays = [], [], []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, dict):
            body = [f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None]
            tables.append(f"[{key}]\n" + "\n".join(body))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                body = [f"{k} = {_toml_value(v)}" for k, v in item.items() if v is not None]
                arrays.append(f"[[{key}]]\n" + "\n".join(body))
        else:
            head.append(f"{key} = {_toml_value(value)}")
    return "\n\n".join(["\n".join(head), *arrays, *tables]) + "\n"
