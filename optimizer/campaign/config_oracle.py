"""``[oracle]`` of a campaign config: the oracle kinds as one discriminated union on ``kind``.

Each kind's schema is the factory's own frozen config (``oracles.factory``), extended with
``kind: Literal[...]``, so the campaign file, the factory and the docs share one definition:

    [oracle]
    kind = "http"
    base_url = "http://127.0.0.1:8765"
    token_env = "LAB_TOKEN"

The older form ``options = { ... }`` is still read (stored configs of older versions) and
flattened into the table.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from oracles.factory import ORACLE_KINDS
from oracles.protocol import Oracle

#: The built-in kinds a campaign config accepts (the factory's registry at import time).
BUILTIN_KINDS: tuple[str, ...] = tuple(ORACLE_KINDS)


def _with_kind(kind: str, base: type[BaseModel]) -> type[BaseModel]:
    name = base.__name__.removesuffix("Config")
    # Literal[kind] with a runtime ``kind`` is not a static type: pydantic's create_model stubs
    # cannot express a field type built at runtime.
    model = create_model(  # type: ignore[call-overload]
        f"{name}Config", __base__=base, __doc__=base.__doc__,
        kind=(Literal[kind], Field(description="which oracle (the discriminator)")),  # type: ignore[arg-type]
    )
    model.__module__ = __name__
    return model


class PullOracleConfig(BaseModel):
    """``kind = "pull"``: labs pull work from the service (``tiltloop serve``'s pull API:
    claim, then report), so the lab needs no inbound connection. The campaign's queued queries
    wait in the database until a lab client claims them; a claim holds them for ``lease_s``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    kind: Literal["pull"] = Field(description="which oracle (the discriminator)")
    objectives: tuple[str, ...] = Field(("y",), min_length=1, description=
                                        "objective names labs report (default: the campaign's)")
    lease_s: float = Field(3600.0, gt=0, le=30 * 86_400, description=
                           "seconds a claim holds its items before another lab may claim them")
    max_claim_items: int = Field(64, ge=1, le=1000, description="the most items one claim returns")
    name: str | None = Field(None, description="the oracle's name in logs and the database")


#: kind -> the campaign's model of that kind (the factory's config plus ``kind``; ``pull`` is the
#: service's own: it has no oracle object, the driver reads the lab's reports from the database).
KIND_MODELS: dict[str, type[BaseModel]] = {
    **{k: _with_kind(k, ORACLE_KINDS[k][0]) for k in BUILTIN_KINDS}, "pull": PullOracleConfig}

if TYPE_CHECKING:
    class OracleConfig(BaseModel):
        """What the type checker sees of ``[oracle]``: the union below is built at runtime (one
        member per registered kind), so statically it is a model with the discriminator ``kind``;
        narrow to a kind's factory config (``isinstance``) for its other fields."""

        kind: str
else:
    # one member per registered kind, known only at runtime: `X | Y` cannot spell it
    OracleConfig = Annotated[Union[tuple(KIND_MODELS.values())], Field(discriminator="kind")]  # noqa: UP007


def flatten_legacy(data: Any) -> Any:
    """``{kind, options: {...}}`` (the pre-0.2 form) → ``{kind, ...options}``."""
    if isinstance(data, dict) and isinstance(data.get("options"), dict):
        rest = {k: v for k, v in data.items() if k != "options"}
        return {**data["options"], **rest}
    return data


def fill_objectives(data: Any, objectives: list[str]) -> Any:
    """Default the oracle's objective names from the campaign's ``[[objectives]]``: kinds with an
    ``objectives`` list get all of them, simulated kinds (one ``objective``) the first."""
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str) \
            or data["kind"] not in KIND_MODELS or not objectives:
        return data
    fields = KIND_MODELS[data["kind"]].model_fields
    if "objectives" in fields and "objectives" not in data:
        return {**data, "objectives": list(objectives)}
    if "objective" in fields and "objective" not in data:
        return {**data, "objective": objectives[0]}
    return data


def reported_objectives(config: BaseModel) -> tuple[str, ...]:
    """The objective names the configured oracle reports."""
    if "objectives" in type(config).model_fields:
        return tuple(config.objectives)  # type: ignore[attr-defined]
    return (str(config.objective),)  # type: ignore[attr-defined]


def factory_config(config: BaseModel) -> BaseModel:
    """The factory's own config object for a campaign oracle config (``kind`` dropped)."""
    kind = config.kind  # type: ignore[attr-defined]
    cls = ORACLE_KINDS[kind][0]
    return cls.model_validate(config.model_dump(exclude={"kind"}))


def stored_oracle(config: dict[str, Any], campaign: str) -> OracleConfig:
    """The ``[oracle]`` table of a stored campaign config, validated alone (a pull claim reads
    it on every request; validating the whole config would cost ~10× more).

    Raises:
        ValueError: the stored table is not a valid oracle config (names the campaign).
    """
    from pydantic import ValidationError

    try:
        return _ORACLE_ADAPTER.validate_python(flatten_legacy(config.get("oracle")))
    except ValidationError as exc:
        raise ValueError(f"the [oracle] stored with campaign {campaign!r} is invalid: "
                         f"{exc.errors()[0]['msg']}") from None


_ORACLE_ADAPTER: Any = None


def is_pull(config: BaseModel) -> bool:
    """Whether labs pull this campaign's work (no oracle object is built)."""
    return isinstance(config, PullOracleConfig)


def build(config: BaseModel) -> Oracle:
    """The oracle itself, wrapped in ``SafeOracle`` (no oracle error unwinds the loop).

    A code-executing kind (``callable`` / ``command``) is built only when this host allows it
    (``optimizer.campaign.oracle_allow``): the one place every campaign oracle passes through.

    Raises:
        ValueError: for ``kind = "pull"``, which has no oracle object (see :func:`is_pull`).
        OracleNotAllowed: a code-executing oracle this host does not allow (nothing is built).
    """
    from optimizer.campaign.oracle_allow import check_oracle_allowed
    from oracles.safe import SafeOracle

    kind = config.kind  # type: ignore[attr-defined]
    if is_pull(config):
        raise ValueError("a pull oracle has no oracle object: labs claim work through "
                         "`tiltloop serve` and the driver reads their reports from the database")
    check_oracle_allowed(config)
    return SafeOracle(ORACLE_KINDS[kind][1](factory_config(config)))


_ORACLE_ADAPTER = TypeAdapter(OracleConfig)
