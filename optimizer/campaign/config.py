"""The campaign config: one TOML file, validated into frozen pydantic models.

A config names every component of a campaign (prior, oracle, objectives, feature map, surrogate,
sampler, workers, budget, storage, Ray) and is stored with the campaign as JSON, so ``resume``
rebuilds the same components. Run state (rounds, queries) never lives here.

Every validation error names the file and the dotted field, the bad value and the remedy:

    >>> cfg = load_config("campaign.toml")            # doctest: +SKIP
    >>> cfg.sampler.alpha_for_round(3), cfg.budget.q   # doctest: +SKIP
    (0.1, 16)
"""
from __future__ import annotations

import math
import re
from tiltloop.toml import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from optimizer.campaign.errors import CampaignConfigError

_TAG_RE = re.compile(r"^\[([\w.]+)\] (.*)$", re.S)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: A field (or env var) named like this may hold a secret: its value is never echoed or stored.
_SECRET_NAME = re.compile(r"token|secret|passw|auth|key|credential|bearer|cookie|session",
                          re.IGNORECASE)
#: Values shaped like common credentials (GitHub / OpenAI / Slack / AWS tokens, JWTs, bearer).
_SECRET_VALUE = re.compile(r"^(gh[pousr]_|github_pat_|sk-|xox[abpr]-|AKIA|eyJ|Bearer\s)")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PriorConfig(_Frozen):
    """Which diffusion prior the workers load (a bundled name or a local path)."""

    name: str = Field(min_length=1, description='bundled prior name ("digits", "manifold", "gmm-toy") or a path')
    device: Literal["auto", "cpu", "cuda"] = "auto"


class OracleConfig(_Frozen):
    """The oracle: a kind of ``oracles.factory`` (http, command, callable, manual, botorch,
    digits, manifold, ...) and its options, validated by that kind's own schema.

    The config is stored in the campaign database, so it never holds a secret: an HTTP token is
    named by ``token_env`` / ``token_file``; a command oracle's ``env`` keeps plain settings
    (stored, so ``resume`` runs the command the same way) and refuses any variable named like a
    secret (token, password, secret, key, auth, ...) or whose value looks like a credential —
    export it in the shell that runs ``tiltloop run`` / ``resume`` instead (the command inherits
    that environment). Error messages never echo an unknown or secret-named field's value."""

    kind: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


class ObjectiveConfig(_Frozen):
    """One objective reported by the oracle and whether larger or smaller is better."""

    name: str = Field(min_length=1)
    direction: Literal["maximize", "minimize"] = "maximize"


class FeatureMapConfig(_Frozen):
    """φ, the surrogate's input map: the prior's bundled map, identity, or a named kind."""

    kind: str = "prior"
    options: dict[str, Any] = Field(default_factory=dict)


class SurrogateConfig(_Frozen):
    """Surrogate and acquisition: ``r̂ = μ + beta·σ`` tilts SMC; ``acquisition`` picks the q."""

    beta: float = Field(default=1.0, ge=0.0)
    acquisition: Literal["qlognei", "qucb"] = "qlognei"
    #: torch threads for fit and screening in the driver; 1 suits GP sizes of a campaign (more
    #: threads on cores shared with the SMC workers made screening ~10x slower)
    threads: int = Field(default=1, ge=1, le=256)
    options: dict[str, Any] = Field(default_factory=dict)


class SamplerConfig(_Frozen):
    """DAS settings. ``alpha`` is one value or a schedule: entry j is used at tilted round j.

    Round 0 (and any round before two results exist) samples the plain prior, so the schedule
    counts tilted rounds only; its last value repeats.
    """

    alpha: float | list[float] = 0.1
    num_steps: int = Field(default=50, ge=2, le=10_000)
    tempering: Literal["adaptive", "exponential", "polynomial"] = "adaptive"
    guidance: Literal["auto", "gradient", "none"] = "auto"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("alpha")
    @classmethod
    def _alpha_positive(cls, v: float | list[float]) -> float | list[float]:
        values = v if isinstance(v, list) else [v]
        if not values:
            raise ValueError("the alpha schedule is empty; give one positive number or a non-empty list")
        for a in values:
            if not math.isfinite(a) or a <= 0:
                raise ValueError(
                    f"alpha must be a finite number > 0 (got {a}); α is the KL brake of the tilt "
                    "p_pre·exp(r̂/α): smaller means a stronger tilt, e.g. alpha = 0.1"
                )
        return v

    def alpha_for_round(self, tilted_round: int) -> float:
        """α for the ``tilted_round``-th round that uses the surrogate (0-based)."""
        if isinstance(self.alpha, list):
            return float(self.alpha[min(tilted_round, len(self.alpha) - 1)])
        return float(self.alpha)


class WorkersConfig(_Frozen):
    """The Ray SMC worker pool: ``count`` actors, each round split into ``count·chunks_per_worker``
    chunks of ``particles_per_worker`` particles (seeded per chunk)."""

    count: int = Field(default=2, ge=1, le=1024)
    particles_per_worker: int = Field(default=256, ge=2)
    chunks_per_worker: int = Field(default=1, ge=1)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    use_gpu: Literal["auto", "on", "off"] = "auto"
    max_chunk_retries: int = Field(default=3, ge=0)

    @property
    def num_chunks(self) -> int:
        return self.count * self.chunks_per_worker

    @property
    def particles_per_round(self) -> int:
        return self.num_chunks * self.particles_per_worker


class BudgetConfig(_Frozen):
    """Oracle budget: ``q`` queries per round, at most ``max_in_flight`` at once, ``total`` in all;
    the campaign stops early once the best result reaches ``stop_target``.

    ``max_in_flight`` defaults to ``2·q``: the next round is generated while the previous round's
    q queries are still at the oracle (they are its pending points), so SMC and screening overlap
    the oracle's latency instead of adding to it. ``max_in_flight = q`` waits for every result
    before the next round (each round sees all results; slower by the loop's own time per round).
    Queries in flight when ``stop_target`` is reached still complete and are recorded. A
    ``manual`` oracle (a person: ``ask`` / ``tell``) defaults to ``q``: one batch at a time."""

    q: int = Field(default=8, ge=1)
    max_in_flight: int | None = Field(default=None, ge=1)
    total: int = Field(default=64, ge=1)
    stop_target: float | None = None
    poll_interval_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> "BudgetConfig":
        if self.total < self.q:
            raise ValueError(
                f"total budget {self.total} is below q = {self.q} queries per round; "
                f"raise budget.total to at least {self.q} or lower budget.q"
            )
        if self.max_in_flight is not None and self.max_in_flight < self.q:
            raise ValueError(
                f"max_in_flight = {self.max_in_flight} is below q = {self.q}, so a round could never "
                "be dispatched; set budget.max_in_flight >= budget.q (or leave it out: default 2·q)"
            )
        return self

    @property
    def in_flight_limit(self) -> int:
        return self.max_in_flight if self.max_in_flight is not None else 2 * self.q


class StorageConfig(_Frozen):
    """Where the campaign lives: a SQLAlchemy URL (``postgresql+psycopg://…`` or ``sqlite:///…``)."""

    url: str = "sqlite:///tiltloop.db"

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str) -> str:
        if not (v.startswith("sqlite:///") or v.startswith("postgresql")):
            raise ValueError(
                f"storage URL {v!r} is neither sqlite:///PATH nor postgresql+psycopg://USER@HOST/DB"
            )
        return v


class RayConfig(_Frozen):
    """Ray: no address starts a local instance; an address (or ``RAY_ADDRESS``) joins a cluster."""

    address: str | None = None


class CampaignConfig(_Frozen):
    """A whole campaign, as read from its TOML file."""

    name: str
    seed: int = Field(default=0, ge=0, lt=2**63)
    prior: PriorConfig
    oracle: OracleConfig
    objectives: list[ObjectiveConfig] = Field(min_length=1)
    feature_map: FeatureMapConfig = FeatureMapConfig()
    surrogate: SurrogateConfig = SurrogateConfig()
    sampler: SamplerConfig = SamplerConfig()
    workers: WorkersConfig = WorkersConfig()
    budget: BudgetConfig = BudgetConfig()
    storage: StorageConfig = StorageConfig()
    ray: RayConfig = RayConfig()

    @model_validator(mode="before")
    @classmethod
    def _manual_in_flight(cls, data: Any) -> Any:
        # A person measuring by hand takes one batch at a time (`ask`, measure, `tell`): there is
        # no latency to overlap, and a second plain batch before any result would spend budget.
        if isinstance(data, dict) and isinstance(data.get("oracle"), dict) \
                and data["oracle"].get("kind") == "manual" and isinstance(data.get("budget", {}), dict):
            budget = dict(data.get("budget", {}))
            if budget.get("max_in_flight") is None:
                budget["max_in_flight"] = budget.get("q", BudgetConfig.model_fields["q"].default)
                data = {**data, "budget": budget}
        return data

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(
                f"campaign name {v!r} must be 1-128 characters of letters, digits, '_', '.', '-'"
            )
        return v

    @model_validator(mode="after")
    def _cross(self) -> "CampaignConfig":
        names = [o.name for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique, got {names}")
        if self.workers.particles_per_round < self.budget.q:
            raise ValueError(
                f"a round makes {self.workers.particles_per_round} particles "
                f"(workers.count x chunks_per_worker x particles_per_worker) but budget.q = "
                f"{self.budget.q}; raise workers.particles_per_worker"
            )
        return self

    @model_validator(mode="after")
    def _oracle_options(self) -> "CampaignConfig":
        from optimizer.campaign.oracle import oracle_options
        from oracles.errors import OracleConfigError
        from oracles.factory import oracle_config

        opts = oracle_options(self.oracle.kind, self.oracle.options, [o.name for o in self.objectives])
        try:
            oracle_config(self.oracle.kind, opts)
        except OracleConfigError as exc:
            raise ValueError(f"[oracle] {exc}") from None
        _refuse_secret_env(self.oracle.options.get("env"))
        return self

    @model_validator(mode="after")
    def _surrogate_options(self) -> "CampaignConfig":
        from optimizer.surrogate.config import SurrogateConfig as GPConfig

        reserved = sorted({"beta", "seed", "maximize"} & set(self.surrogate.options))
        if reserved:
            raise ValueError(f"[surrogate.options] {reserved} are set by the loop (beta: "
                             "surrogate.beta; seed: the campaign seed; maximize: objectives.direction)")
        try:
            GPConfig(**self.surrogate.options)
        except ValidationError as exc:
            bad = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                + (" (value not shown)" if _hide_value(e, ".".join(map(str, e["loc"])))
                   else f" (got {e.get('input')!r})")
                for e in exc.errors())
            raise ValueError(f"[surrogate.options] {bad}") from None
        return self

    @property
    def primary_objective(self) -> ObjectiveConfig:
        return self.objectives[0]

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON snapshot stored with the campaign."""
        return self.model_dump(mode="json")

    def with_budget(self, total: int) -> "CampaignConfig":
        """A copy with a new total budget (used to extend a finished campaign), re-validated."""
        data = self.to_json_dict()
        data["budget"]["total"] = total
        return CampaignConfig.model_validate(data)


def _refuse_secret_env(env: Any) -> None:
    """The config is stored in the database as JSON (resume rebuilds the oracle from it), so a
    command oracle's ``env`` may hold settings, never secrets: a secret belongs in the
    environment of ``tiltloop run`` / ``resume``, which the command inherits."""
    if not isinstance(env, dict):
        return
    for name, value in env.items():
        if _SECRET_NAME.search(str(name)) or _SECRET_VALUE.match(str(value)):
            raise ValueError(
                f"[oracle.options.env.{name}] looks like a secret (value not shown); the config is "
                "stored in the campaign database, so do not put secrets in it: remove it here and "
                f"export {name} in the shell that runs `tiltloop run` / `tiltloop resume` (the "
                "command inherits that environment)")


def _hide_value(e: dict[str, Any], field: str) -> bool:
    """Never echo an unknown field's value (it may be a token put in the wrong place) nor the
    value of a field named like a secret."""
    return e["type"] == "extra_forbidden" or bool(_SECRET_NAME.search(field))


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid campaign config {source}:"]
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        tagged = _TAG_RE.match(msg)  # "[field] message" from a cross-field validator
        if tagged:
            field, msg = tagged.group(1), tagged.group(2)
        if e["type"] == "extra_forbidden":
            msg = "unknown field (a typo?); remove it or check the spelling against the docs"
        elif e["type"] == "missing":
            msg = "required field is missing"
        value = e.get("input")
        if e["type"] == "missing" or isinstance(value, dict) or tagged:
            shown = ""
        elif _hide_value(e, field):
            shown = " (value not shown)"
        else:
            shown = f" (got {value!r})"
        msg = msg.replace("\n", "; ")
        lines.append(f"  field `{field}`: {msg}{shown}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], source: str = "<dict>") -> CampaignConfig:
    """Validate a config dict; raise :class:`CampaignConfigError` naming ``source`` and each field."""
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as err:
        raise CampaignConfigError(_format_errors(err, source)) from None


def load_config(path: str | Path) -> CampaignConfig:
    """Read and validate a campaign TOML file.

    Raises:
        CampaignConfigError: the file is missing, is not TOML, or a field is invalid; the message
            names the file and every bad field with its value.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CampaignConfigError(f"campaign config {p} does not exist; give the path of a .toml file") from None
    except OSError as exc:
        raise CampaignConfigError(f"campaign config {p} cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignConfigError(f"campaign config {p} is not valid TOML: {exc}") from None
    return parse_config(data, str(p))


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
