"""``docs/config.md``, generated from the campaign config's pydantic models themselves.

Walks :class:`~optimizer.campaign.config.CampaignConfig` field by field: one table per section
(field, type, default, rules, description), one sub-section per kind of the ``oracle`` and
``feature_map`` unions, nested tables (``oracle.retry``) after their parent. A description comes
from the field's ``description``, else the class docstring's ``Attributes:`` section, else a
``#:`` comment above the field. The output is deterministic, so a test compares it with the
committed file:

    python -m optimizer.campaign.config_docs --out docs/config.md   # regenerate
    python -m optimizer.campaign.config_docs --check                # exit 1 when stale

    >>> text = render_config_docs()
    >>> "`sampler.ess_threshold`" in text
    True
"""
from __future__ import annotations

import argparse
import functools
import inspect
import re
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from optimizer.campaign.config import CampaignConfig

REGEN_COMMAND = "python -m optimizer.campaign.config_docs --out docs/config.md"
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs" / "config.md"

#: Rules enforced by a validator rather than by a constraint, keyed by ``Class.field``.
#: Computed from the registries at render time, so the docs follow them.
_VALIDATOR_RULES: dict[str, Any] = {
    "DASOptions.resampling": lambda: "one of " + _choices(_resamplers()),
    "DASOptions.tempering": lambda: "one of " + _choices(_temperings()),
    "SamplerConfig.alpha": lambda: "each value finite and > 0; a list must be non-empty",
    "SamplerConfig.kl_budget": lambda: 'only with `alpha = "auto"`',
    "SamplerConfig.alpha_min": lambda: '< `sampler.alpha_max`; only with `alpha = "auto"`',
    "SamplerConfig.alpha_max": lambda: 'only with `alpha = "auto"`',
    "SamplerConfig.overopt_gap": lambda: 'only with `alpha = "auto"`',
    "SamplerConfig.overopt_factor": lambda: 'only with `alpha = "auto"`',
    "CampaignConfig.name": lambda: "1-128 of letters, digits, `_` `.` `-`; starts with a letter or digit",
    "HistoryConfig.import_from": lambda: "valid campaign names, each once, not this campaign",
    "StorageConfig.url": lambda: "starts with `sqlite:///` or `postgresql`",
    "BudgetConfig.total": lambda: "≥ `budget.q`",
    "BudgetConfig.max_in_flight": lambda: "≥ `budget.q`",
    "SurrogateConfig.max_conditioning_size": lambda: "≥ `surrogate.fit_subset_size`",
    "SurrogateConfig.weights": lambda: "each ≥ 0",
    "SurrogateConfig.seed": lambda: "set by the loop (the campaign seed); do not set it in a campaign",
    "SurrogateConfig.num_constraints":
        lambda: "set by the loop (`[[constraints]]`); do not set it in a campaign",
    "SurrogateConfig.maximize":
        lambda: "set by the loop (`objectives.direction`); do not set it in a campaign",
    "SurrogateConfig.reference_point":
        lambda: "set by the loop (`objectives.reference`); do not set it in a campaign",
    "CommandOracleConfig.env": lambda: "settings only: a name or value that looks like a secret is refused",
}


def _resamplers() -> tuple[str, ...]:
    from optimizer.smc.resampling import RESAMPLERS

    return tuple(RESAMPLERS)


def _temperings() -> tuple[str, ...]:
    from optimizer.das.config import TEMPERING_NAMES

    return tuple(TEMPERING_NAMES)


def _choices(values: Any) -> str:
    return ", ".join(_toml(v) for v in values)


# ---- types, defaults, rules -------------------------------------------------------------------
def _toml(v: Any) -> str:
    """A value as it would be written in the TOML file, in backticks."""
    return f"`{_toml_raw(v)}`"


def _toml_raw(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (str, Path)):
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_raw(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_raw(x)}" for k, x in v.items()) + "}"
    if isinstance(v, BaseModel):
        return _toml_raw(v.model_dump(mode="json", exclude_none=True))
    return str(v)


def _is_model(tp: Any) -> bool:
    return inspect.isclass(tp) and issubclass(tp, BaseModel)


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    tp = _strip_annotated(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        return typing.get_args(tp)
    return None


def _type_name(tp: Any) -> str:
    tp = _strip_annotated(tp)
    if tp is type(None):
        return "none"
    args = _union_args(tp)
    if args is not None:
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + (
            " (optional)" if type(None) in args else "")
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "string" if all(isinstance(a, str) for a in typing.get_args(tp)) else "choice"
    if origin in (list, tuple):
        inner = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if origin is tuple and len(inner) > 1 and Ellipsis not in typing.get_args(tp):
            return "[" + ", ".join(_type_name(a) for a in inner) + "]"
        return f"array of {_type_name(inner[0])}" if inner else "array"
    if origin is dict:
        key, value = typing.get_args(tp)
        return f"table of {_type_name(key)} → {_type_name(value)}"
    if _is_model(tp):
        return "table"
    names = {str: "string", int: "integer", float: "float", bool: "boolean", Path: "path"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return _toml(info.default_factory())  # type: ignore[call-arg]
    if info.default is PydanticUndefined:
        return "**required**"
    if info.default is None:
        return "unset"
    if isinstance(info.default, BaseModel):
        tag = getattr(info.default, "kind", None)
        return "see below" if not tag else f"kind {_toml(tag)}"
    return _toml(info.default)


_BOUNDS = ((at.Ge, "ge", "≥"), (at.Gt, "gt", ">"), (at.Le, "le", "≤"), (at.Lt, "lt", "<"))


def _bound(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and v >= 2**32 and (v & (v - 1)) == 0:
        return f"2^{v.bit_length() - 1}"
    return repr(v)


def _rules(owner: str, name: str, info: FieldInfo) -> str:
    rules: list[str] = []
    for meta in info.metadata:
        for cls, attr, sign in _BOUNDS:
            if isinstance(meta, cls):
                rules.append(f"{sign} {_bound(getattr(meta, attr))}")
        if isinstance(meta, at.MinLen):
            rules.append(f"length ≥ {meta.min_length}")
        if isinstance(meta, at.MaxLen):
            rules.append(f"length ≤ {meta.max_length}")
        pattern = getattr(meta, "pattern", None)
        if isinstance(pattern, str):
            rules.append(f"matches `{pattern}`")
    literals = _literal_values(info.annotation)
    if literals:
        rules.append("one of " + _choices(literals))
    extra = _VALIDATOR_RULES.get(f"{owner}.{name}")
    if extra is not None:
        rules.append(extra())
    return "; ".join(rules)


def _literal_values(tp: Any) -> tuple[Any, ...]:
    tp = _strip_annotated(tp)
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    args = _union_args(tp)
    if args is not None:
        return tuple(v for a in args for v in _literal_values(a))
    return ()


# ---- descriptions -----------------------------------------------------------------------------
_ENTRY = re.compile(r"^(\s*)(\w+): ?(.*)$")


@functools.cache
def _docstring_attributes(cls: type) -> dict[str, str]:
    """``Attributes:`` entries of a Google-style class docstring (own docstring only)."""
    doc = cls.__dict__.get("__doc__") or ""
    lines = inspect.cleandoc(doc).splitlines()
    out: dict[str, str] = {}
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return out
    indent: int | None = None
    current: str | None = None
    for line in lines[start + 1:]:
        if not line.strip():
            current = None
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        if depth < indent:
            break
        m = _ENTRY.match(line)
        if depth == indent and m:
            current = m.group(2)
            out[current] = m.group(3).strip()
        elif depth > indent and current is not None:
            out[current] += " " + line.strip()
    return out


@functools.cache
def _comment_docs(cls: type) -> dict[str, str]:
    """``#:`` comments written directly above a field in the class body (project classes only)."""
    if cls.__module__.split(".")[0] in ("pydantic", "builtins", "typing"):
        return {}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        m = re.match(r"^(\w+)\s*:", stripped)
        if m and pending:
            out[m.group(1)] = " ".join(pending)
        pending = []
    return out


def _description(model: type[BaseModel], name: str, info: FieldInfo) -> str:
    if info.description:
        return info.description
    for cls in model.__mro__:
        if not (_is_model(cls) and name in cls.__dict__.get("__annotations__", {})) and \
                cls is not model:
            continue
        found = _docstring_attributes(cls).get(name) or _comment_docs(cls).get(name)
        if found:
            return found
    for cls in model.__mro__:  # the field is declared on a base without docs: any base's docs
        if _is_model(cls):
            found = _docstring_attributes(cls).get(name) or _comment_docs(cls).get(name)
            if found:
                return found
    return ""


def _class_doc(model: type[BaseModel]) -> str:
    doc = model.__dict__.get("__doc__") or ""
    doc = inspect.cleandoc(doc).split("\nAttributes:")[0].strip()
    paragraphs = [" ".join(p.split()) for p in doc.split("\n\n") if p.strip()]
    return "\n\n".join(paragraphs)


# ---- walking ----------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _section_models(tp: Any) -> tuple[str, list[type[BaseModel]]] | None:
    """("table" | "array" | "union", models) when a field's type is a nested section."""
    tp = _strip_annotated(tp)
    if _is_model(tp):
        return "table", [tp]
    args = _union_args(tp)
    if args is not None and args and all(_is_model(a) for a in args):
        return "union", list(args)
    if typing.get_origin(tp) is list:
        inner = typing.get_args(tp)
        if inner and _is_model(inner[0]):
            return "array", [inner[0]]
    return None


def leaf_fields(model: type[BaseModel] = CampaignConfig, prefix: str = "") -> Iterator[str]:
    """Dotted names of every setting (union kinds merged, as error messages name them)."""
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        nested = _section_models(info.annotation)
        if nested is None:
            yield path
            continue
        for sub in nested[1]:
            yield from leaf_fields(sub, path + ".")


def _table(model: type[BaseModel], prefix: str) -> tuple[list[str], list[tuple[str, Any, str]]]:
    rows = ["| field | type | default | rules | description |", "|---|---|---|---|---|"]
    nested: list[tuple[str, Any, str]] = []
    fields = sorted(model.model_fields.items(), key=lambda kv: kv[0] != "kind")  # the tag first
    for name, info in fields:
        path = f"{prefix}{name}"
        kind = _section_models(info.annotation)
        if kind is not None and kind[0] == "table":
            nested.append((path, kind[1][0], "table"))
        if kind is not None and kind[0] == "union":  # a nested kind union ([[oracles]] oracle)
            nested.append((path, kind[1], "union"))
        desc = _description(model, name, info)
        if kind is not None and kind[0] == "table":
            desc = (desc + " " if desc else "") + f"A table: see `[{path}]` below."
        if kind is not None and kind[0] == "union":
            desc = (desc + " " if desc else "") + f"A table: see `{path}.kind` below."
        rows.append("| " + " | ".join(_cell(c) for c in (
            f"`{path}`", _type_name(info.annotation), _default(info),
            _rules(_owner(model, name), name, info), desc)) + " |")
    return rows, nested


def _owner(model: type[BaseModel], name: str) -> str:
    """The class that declares ``name`` (validator rules are keyed by it)."""
    for cls in model.__mro__:
        if name in cls.__dict__.get("__annotations__", {}):
            if f"{cls.__name__}.{name}" in _VALIDATOR_RULES:
                return cls.__name__
    return model.__name__


def _render_model(model: type[BaseModel], path: str, level: int, heading: str) -> list[str]:
    out = [f"{'#' * level} {heading}", ""]
    doc = _class_doc(model)
    if doc:
        out += [doc, ""]
    rows, nested = _table(model, path + ".")
    out += rows + [""]
    for sub_path, sub, how in nested:
        if how == "union":
            for model_ in sub:
                tag = typing.get_args(model_.model_fields["kind"].annotation)[0]
                out += _render_model(model_, sub_path, level + 1, f'`{sub_path}.kind = "{tag}"`')
            continue
        out += _render_model(sub, sub_path, level + 1, f"`[{sub_path}]`")
    return out


def render_config_docs() -> str:
    """The whole ``docs/config.md`` text (deterministic: no dates, no addresses)."""
    out = [
        "# Campaign config reference",
        "",
        f"<!-- Generated from the pydantic models by `{REGEN_COMMAND}`; do not edit by hand. -->",
        "",
        f"*Generated from the pydantic models (`optimizer.campaign.config.CampaignConfig`); do not "
        f"edit by hand. Regenerate with `{REGEN_COMMAND}`; `--check` tells whether it is stale.*",
        "",
        _class_doc(CampaignConfig),
        "",
        "A campaign is one TOML file (`tiltloop run FILE`). Every field is named here by its "
        "dotted path, as error messages name it. *unset* means the field is left out (TOML has "
        "no null). Relative paths resolve against the config file's folder.",
        "",
        "## Top level",
        "",
    ]
    top = ["| field | type | default | rules | description |", "|---|---|---|---|---|"]
    sections: list[tuple[str, str, list[type[BaseModel]], FieldInfo]] = []
    for name, info in CampaignConfig.model_fields.items():
        section = _section_models(info.annotation)
        if section is None:
            top.append("| " + " | ".join(_cell(c) for c in (
                f"`{name}`", _type_name(info.annotation), _default(info),
                _rules("CampaignConfig", name, info), _description(CampaignConfig, name, info))) + " |")
        else:
            sections.append((name, section[0], section[1], info))
    out += top + [""]
    for name, kind, models, info in sections:
        if kind == "table":
            out += _render_model(models[0], name, 2, f"`[{name}]`")
        elif kind == "array":
            rules = _rules("CampaignConfig", name, info)
            out += [f"## `[[{name}]]`", "", f"An array of tables ({rules or 'any length'}); "
                    f"each entry:", ""]
            sub = _render_model(models[0], name, 3, f"`[[{name}]]` entry")
            out += sub[2:]  # skip the repeated heading
        else:
            tags = [typing.get_args(m.model_fields["kind"].annotation)[0] for m in models]
            out += [f"## `[{name}]`", "",
                    f"One of {len(models)} kinds, chosen by `{name}.kind` "
                    f"({_choices(tags)}); default: {_default(info)}. Each kind has its own fields; "
                    "a field of another kind is an error.", ""]
            for tag, model in zip(tags, models):
                out += _render_model(model, name, 3, f'`{name}.kind = "{tag}"`')
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m optimizer.campaign.config_docs [--check] [--out PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m optimizer.campaign.config_docs",
                                     description="Generate docs/config.md from the config models.")
    parser.add_argument("--out", type=Path, default=None,
                        help="write here (default: print to stdout; with --check: docs/config.md)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the file differs from the rendered text")
    args = parser.parse_args(argv)
    text = render_config_docs()
    if args.check:
        path = args.out or DEFAULT_OUT
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            state = "is missing" if current is None else "is stale"
            print(f"{path} {state}; regenerate it with `{REGEN_COMMAND}`", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    if args.out is None:
        sys.stdout.write(text)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
