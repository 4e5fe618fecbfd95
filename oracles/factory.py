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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from oracles.errors import OracleConfigError
from oracles.http import RetryPolicy
from oracles.protocol import Oracle
from oracles.safe import SafeOracle



class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    objectives: tuple[str, ...] = Field(("y",), min_length=1, description=
                                        "objective names the oracle reports (default: the campaign's)")


class HttpOracleConfig(_Config):
    """``kind = "http"``: a lab job API (see ``oracles.http``)."""

    base_url: str = Field(min_length=1, description="the lab API's root (https://…; http only on loopback)")
    token_env: str | None = Field(None, description="environment variable holding the bearer token")
    token_file: Path | None = Field(
        None, description="file holding the bearer token (relative: to the config's folder)")
    verify: bool | str = Field(True, description="verify TLS (true), or a CA bundle path")
    timeout_s: float = Field(30.0, gt=0, le=86_400, description="seconds per HTTP request")
    connect_timeout_s: float = Field(10.0, gt=0, le=3600, description="seconds to connect")
    retry: RetryPolicy = Field(RetryPolicy(), description="retries of connection errors, 5xx and 429")
    max_concurrency: int = Field(16, ge=1, le=1024, description="requests in flight at once")
    allow_insecure_http: bool = Field(False, description="allow plain http to a non-loopback host")
    name: str | None = Field(None, description="the oracle's name in logs and the database")


class CommandOracleConfig(_Config):
    """``kind = "command"``: a program run per design (see ``oracles.command``)."""

    argv: list[str] = Field(min_length=1, description="the program and its arguments (no shell)")
    input_mode: Literal["stdin", "file"] = Field(
        "stdin", description="design JSON on stdin, or in a file named by $TILTLOOP_INPUT")
    timeout_s: float = Field(3600.0, gt=0, le=30 * 86_400, description="seconds before a run is killed")
    kill_grace_s: float = Field(5.0, ge=0, le=3600, description="seconds between SIGTERM and SIGKILL")
    max_concurrency: int = Field(1, ge=1, le=1024, description="programs running at once")
    cwd: Path | None = Field(None, description="working folder (default: the config file's folder)")
    env: dict[str, str] = Field(default_factory=dict,
                                description="extra environment (settings, never secrets)")
    name: str | None = Field(None, description="the oracle's name in logs and the database")


class CallableOracleConfig(_Config):
    """``kind = "callable"``: a Python function named ``"package.module:function"``."""

    target: str = Field(pattern=r"^[\w.]+:[\w.]+$",
                        description='"package.module:function", design -> {objective: value}')
    max_workers: int = Field(4, ge=1, le=1024, description="calls running at once (threads)")


class ManualOracleConfig(_Config):
    """``kind = "manual"``: ask/tell through CSV / JSON files (see ``oracles.manual``)."""

    directory: Path = Field(
        description="where pending.csv goes and results come back (relative: to the config's folder)")
    export_format: Literal["csv", "json"] = Field("csv", description="format of the pending file")


class _SimulatedConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    latency_s: float = Field(0.0, ge=0, le=86_400, description="seconds each evaluation takes")
    noise_std: float = Field(0.0, ge=0, description="std of Gaussian noise added to each value")
    failure_rate: float = Field(0.0, ge=0, le=1, description="fraction of evaluations that fail")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of noise and failures")


class BoTorchOracleConfig(_SimulatedConfig):
    """``kind = "botorch"``: a BoTorch test function on the unit cube, maximized by default."""

    function: str = Field("branin", description="a BoTorch test function (branin, hartmann6, ackley, ...)")

    @field_validator("function")
    @classmethod
    def _known_function(cls, v: str) -> str:
        from oracles.simulated.botorch_functions import ALIASES, FUNCTIONS

        name = v.lower().replace("-", "_")
        if name not in FUNCTIONS and name not in ALIASES:
            raise ValueError(f"unknown BoTorch function {v!r}; choose one of "
                             f"{', '.join(sorted([*FUNCTIONS, *ALIASES]))}")
        return v

    dim: int | None = Field(None, ge=1, le=100_000, description="dimension, for functions that take one")
    bounds: list[tuple[float, float]] | None = Field(None, description="box the unit cube maps to")
    negate: bool = Field(True, description="report −f (maximization convention)")
    objective: str = Field("y", description="the objective's name (default: the campaign's)")


class DigitsOracleConfig(_SimulatedConfig):
    """``kind = "digits"``: belief in a target digit for an `8 x 8` image (``DigitScorerOracle``)."""

    target_digit: int = Field(3, ge=0, le=9, description="the digit whose belief is scored")
    output: Literal["p", "log_p", "log_odds"] = Field("p",
                                                      description="what is reported of p(target | image)")
    log_prob: bool = Field(False, description="legacy: same as output = \"log_p\"")
    objective: str = Field("p_target", description="the objective's name (default: the campaign's)")
    train_fraction: float = Field(1.0, ge=0.1, le=1.0,
                                  description="fraction of the digits the scorer is trained on")
    pixel_range: Literal["unit", "signed"] = Field(
        "unit", description='pixels in [0, 1], or [-1, 1] ("signed": the bundled digits prior)')
    off_data_penalty: float = Field(0.0, ge=0.0, le=1e6,
                                    description="w of the penalty w·max(0, d − r)² off the real digits")
    off_data_radius: float | None = Field(
        None, gt=0.0, description="r of that penalty (default: 95% quantile among real digits)")


class ManifoldOracleConfig(_SimulatedConfig):
    """``kind = "manifold"``: the bundled manifold problem (16-d designs, ``ManifoldOracle``)."""

    objective: str = Field("value", description="the objective's name (default: the campaign's)")


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
