"""Build an oracle from a campaign file: ``build_oracle(kind, options)``.

Each kind has a frozen pydantic config (unknown fields are errors, so a typo in a campaign TOML is
caught at start-up); an error names the kind, the field, the value and the rule. The built oracle is
wrapped in :class:`oracles.safe.SafeOracle` so no oracle exception reaches the campaign loop.

>>> oracle = build_oracle("botorch", {"function": "hartmann6", "noise_std": 0.05, "seed": 1})
>>> oracle = build_oracle("http", {"base_url": "https://lab.example.org/api",
...                                "objectives": ["yield"], "token_env": "LAB_TOKEN"})

Other modules add kinds with :func:`register_oracle_kind` (usable with ``build_oracle``; a
campaign config accepts the built-in kinds, whose schemas it nests as a discriminated union).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oracles.errors import OracleConfigError
from oracles.http import RetryPolicy
from oracles.protocol import Oracle
from oracles.safe import SafeOracle



class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    objectives: tuple[str, ...] = Field(("y",), min_length=1)


class HttpOracleConfig(_Config):
    """``kind = "http"``: a lab job API (see ``oracles.http``)."""

    base_url: str
    token_env: str | None = None
    token_file: Path | None = None
    verify: bool | str = True
    timeout_s: float = Field(30.0, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0)
    retry: RetryPolicy = RetryPolicy()
    max_concurrency: int = Field(16, ge=1, le=1024)
    allow_insecure_http: bool = False
    name: str | None = None


class CommandOracleConfig(_Config):
    """``kind = "command"``: a program run per design (see ``oracles.command``)."""

    argv: list[str] = Field(min_length=1)
    input_mode: Literal["stdin", "file"] = "stdin"
    timeout_s: float = Field(3600.0, gt=0)
    kill_grace_s: float = Field(5.0, ge=0)
    max_concurrency: int = Field(1, ge=1, le=1024)
    cwd: Path | None = None
    env: dict[str, str] = Field(default_factory=dict)
    name: str | None = None


class CallableOracleConfig(_Config):
    """``kind = "callable"``: a Python function named ``"package.module:function"``."""

    target: str = Field(pattern=r"^[\w.]+:[\w.]+$")
    max_workers: int = Field(4, ge=1, le=1024)


class ManualOracleConfig(_Config):
    """``kind = "manual"``: ask/tell through CSV / JSON files (see ``oracles.manual``)."""

    directory: Path
    export_format: Literal["csv", "json"] = "csv"


class _SimulatedConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    latency_s: float = Field(0.0, ge=0)
    noise_std: float = Field(0.0, ge=0)
    failure_rate: float = Field(0.0, ge=0, le=1)
    seed: int = 0


class BoTorchOracleConfig(_SimulatedConfig):
    """``kind = "botorch"``: a BoTorch test function on the unit cube, maximized by default."""

    function: str = "branin"
    dim: int | None = Field(None, ge=1)
    bounds: list[tuple[float, float]] | None = None
    negate: bool = True
    objective: str = "y"


class DigitsOracleConfig(_SimulatedConfig):
    """``kind = "digits"``: belief in a target digit for an `8 x 8` image (``DigitScorerOracle``)."""

    target_digit: int = Field(3, ge=0, le=9)
    output: Literal["p", "log_p", "log_odds"] = "p"
    log_prob: bool = False
    objective: str = "p_target"
    train_fraction: float = Field(1.0, ge=0.1, le=1.0)
    pixel_range: Literal["unit", "signed"] = "unit"
    off_data_penalty: float = Field(0.0, ge=0.0)
    off_data_radius: float | None = Field(None, gt=0.0)


class ManifoldOracleConfig(_SimulatedConfig):
    """``kind = "manifold"``: the bundled manifold problem (16-d designs, ``ManifoldOracle``)."""

    objective: str = "value"


def _http(c: HttpOracleConfig) -> Oracle:
    from oracles.http import HttpOracle
    return HttpOracle(c.base_url, c.objectives, token_env=c.token_env, token_file=c.token_file,
                      verify=c.verify, timeout_s=c.timeout_s, connect_timeout_s=c.connect_timeout_s,
                      retry=c.retry, max_concurrency=c.max_concurrency,
                      allow_insecure_http=c.allow_insecure_http, name=c.name)


def _command(c: CommandOracleConfig) -> Oracle:
    from oracles.command import CommandOracle
    return CommandOracle(c.argv, c.objectives, input_mode=c.input_mode, timeout_s=c.timeout_s,
                         kill_grace_s=c.kill_grace_s, max_concurrency=c.max_concurrency,
                         cwd=c.cwd, env=c.env, name=c.name)


def _callable(c: CallableOracleConfig) -> Oracle:
    from oracles.callable import CallableOracle
    return CallableOracle(c.target, c.objectives, max_workers=c.max_workers)


def _manual(c: ManualOracleConfig) -> Oracle:
    from oracles.manual import ManualOracle
    return ManualOracle(c.directory, c.objectives, export_format=c.export_format)


def _botorch(c: BoTorchOracleConfig) -> Oracle:
    from oracles.simulated.botorch_functions import BoTorchFunctionOracle
    return BoTorchFunctionOracle(**c.model_dump())


def _digits(c: DigitsOracleConfig) -> Oracle:
    from oracles.simulated.digits import DigitScorerOracle
    return DigitScorerOracle(**c.model_dump())


def _manifold(c: ManifoldOracleConfig) -> Oracle:
    from oracles.simulated.manifold import ManifoldOracle
    return ManifoldOracle(**c.model_dump())


ORACLE_KINDS: dict[str, tuple[type[BaseModel], Callable[[Any], Oracle]]] = {
    "http": (HttpOracleConfig, _http),
    "command": (CommandOracleConfig, _command),
    "callable": (CallableOracleConfig, _callable),
    "manual": (ManualOracleConfig, _manual),
    "botorch": (BoTorchOracleConfig, _botorch),
    "digits": (DigitsOracleConfig, _digits),
    "manifold": (ManifoldOracleConfig, _manifold),
}


def register_oracle_kind(kind: str, config_cls: type[BaseModel],
                         builder: Callable[[Any], Oracle]) -> None:
    """Make ``build_oracle(kind, options)`` validate ``options`` with ``config_cls`` (a frozen
    pydantic model, ``extra="forbid"``) and build with ``builder(config)``."""
    ORACLE_KINDS[kind] = (config_cls, builder)


#: Field names whose values are never echoed in an error (a token pasted into the config).
_SECRET_FIELD = re.compile(r"token|secret|passw|auth|api.?key|credential|bearer", re.IGNORECASE)


def describe_validation_error(kind: str, exc: ValidationError) -> str:
    """One line per problem: field path, rule, offending value (never the value of an unknown
    field or of a field named like a secret: it may be a token put in the wrong place)."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(options)"
        if err["type"] == "missing":
            value = ""
        elif _SECRET_FIELD.search(field):
            value = (" (value not shown; keep a token in an environment variable or a file and "
                     "name it with token_env / token_file)")
        elif err["type"] == "extra_forbidden":
            value = " (value not shown)"
        else:
            value = f" (got {err.get('input')!r:.80})"
        lines.append(f"oracle kind {kind!r}: field {field!r}: {err['msg']}{value}")
    return "\n".join(lines)


def oracle_config(kind: str, options: dict[str, Any]) -> BaseModel:
    """Validate ``options`` for ``kind``; the frozen config is what a campaign stores.

    Raises:
        OracleConfigError: unknown kind (lists the valid ones) or bad fields (names each).
    """
    if kind not in ORACLE_KINDS:
        raise OracleConfigError(f"unknown oracle kind {kind!r}; choose one of "
                                f"{sorted(ORACLE_KINDS)}")
    config_cls, _ = ORACLE_KINDS[kind]
    try:
        return config_cls.model_validate(dict(options))
    except ValidationError as exc:
        raise OracleConfigError(describe_validation_error(kind, exc)) from None


def build_oracle(kind: str, options: dict[str, Any], *, safe: bool = True) -> Oracle:
    """Validate ``options`` for ``kind`` and build the oracle (wrapped in ``SafeOracle``
    unless ``safe=False``).

    Raises:
        OracleConfigError: naming the kind and the field.
    """
    config = oracle_config(kind, options)
    oracle = ORACLE_KINDS[kind][1](config)
    return SafeOracle(oracle) if safe else oracle
