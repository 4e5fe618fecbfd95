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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from optimizer.campaign.config_constraints import (ConstraintConfig, check_constraints,
                                                   constraint_names)
from optimizer.campaign.config_fidelity import CheapOracleConfig, check_oracles
from optimizer.campaign.fidelity_outputs import modelled_outputs
from optimizer.campaign.config_pareto import check_pareto, signed_reference
from optimizer.campaign.config_oracle import (KIND_MODELS, OracleConfig, fill_objectives,
                                              flatten_legacy, reported_objectives)
from optimizer.campaign.config_pipeline import PipelineConfig
from optimizer.das.config import DASOptions
from optimizer.surrogate.config import SurrogateConfig

_TAG_RE = re.compile(r"^\[([\w.]+)\] (.*)$", re.S)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_RESOURCE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-/]{0,63}$")
#: A field (or env var) named like this may hold a secret: its value is never echoed or stored.
_SECRET_NAME = re.compile(r"token|secret|passw|auth|key|credential|bearer|cookie|session",
                          re.IGNORECASE)
#: Values shaped like common credentials (GitHub / OpenAI / Slack / AWS tokens, JWTs, bearer).
_SECRET_VALUE = re.compile(r"^(gh[pousr]_|github_pat_|sk-|xox[abpr]-|AKIA|eyJ|Bearer\s)")


#: The largest integer a database column (BIGINT / SQLite INTEGER) holds.
MAX_INT = 2**63 - 1


class _Frozen(BaseModel):
    # NaN / inf never make sense in a campaign and are not strict JSON (the snapshot is stored)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class PriorConfig(_Frozen):
    """Which diffusion prior the workers load (a bundled name or a local folder; a relative
    folder is resolved against the config file's folder)."""

    name: str = Field(min_length=1, max_length=4096,
                      description='bundled prior name ("digits", "manifold", "gmm-toy") or a path')
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="where the workers run the prior (auto: a GPU when present)")


class ObjectiveConfig(_Frozen):
    """One objective reported by the oracle and whether larger or smaller is better."""

    name: str = Field(min_length=1, max_length=128)
    direction: Literal["maximize", "minimize"] = "maximize"
    reference: float | None = Field(
        default=None, description="hypervolume reference point in this objective's own units "
        "(a value worse than any design you would accept; None: inferred from the data)")


class PriorFeatures(_Frozen):
    """``kind = "prior"``: the prior's own feature map (the digit embedding for ``digits``,
    identity for vector priors)."""

    kind: Literal["prior"] = "prior"


class IdentityFeatures(_Frozen):
    """``kind = "identity"``: the flattened designs themselves."""

    kind: Literal["identity"] = "identity"


#: φ, the surrogate's input map. Only maps that the driver and every worker rebuild identically
#: from the config alone are offered (a fitted map such as PCA would differ between processes).
FeatureMapConfig = Annotated[PriorFeatures | IdentityFeatures, Field(discriminator="kind")]


class SamplerConfig(DASOptions):
    """DAS settings (``optimizer.das.DASOptions``) plus ``alpha``: one value, a schedule (entry
    j is used at tilted round j), or ``"auto"``. The particle count comes from ``[workers]``.

    Round 0 (and any round before two results exist) samples the plain prior, so the schedule
    counts tilted rounds only; its last value repeats.

    ``alpha = "auto"`` (``optimizer.campaign.auto_alpha``): each tilted round takes the α whose
    estimated `KL(π_α‖p_pre)` equals ``kl_budget`` nats (estimated on the plain-prior round's
    samples, α within ``[alpha_min, alpha_max]``), multiplied by ``overopt_factor`` when the
    surrogate over-estimated the last completed round's results by more than ``overopt_gap``
    result standard deviations. An auto-only field set to other than its default is refused with
    a numeric ``alpha``.
    """

    alpha: float | list[float] | Literal["auto"] = Field(
        default=0.1, description='α of `p_pre·exp(r̂/α)`: one value, one per tilted round, or '
                                 '"auto" (from kl_budget and the over-optimization brake)')
    kl_budget: float = Field(
        default=1.0, gt=0, le=100,
        description='alpha = "auto": nats of KL(π‖p_pre) a round\'s target may move from the prior')
    alpha_min: float = Field(default=1e-4, gt=0, le=1e12,
                             description='alpha = "auto": the smallest α (strongest tilt) allowed')
    alpha_max: float = Field(default=1e4, gt=0, le=1e12,
                             description='alpha = "auto": the largest α (weakest tilt) allowed')
    overopt_gap: float = Field(
        default=1.0, gt=0, le=1e6,
        description='alpha = "auto": the brake fires when the surrogate over-estimated the last '
                    'completed round\'s results by more than this many result std')
    overopt_factor: float = Field(
        default=2.0, gt=1, le=1000,
        description='alpha = "auto": α is multiplied by this when the brake fires')

    @field_validator("alpha", mode="before")
    @classmethod
    def _alpha_word(cls, v: Any) -> Any:
        if isinstance(v, str) and v != "auto":
            try:
                return float(v)
            except ValueError:
                raise ValueError('alpha must be a number > 0, a list of them, or "auto"') from None
        return v

    @field_validator("alpha")
    @classmethod
    def _alpha_positive(cls, v: float | list[float] | str) -> float | list[float] | str:
        if isinstance(v, str):
            return v  # "auto" (the Literal admits nothing else)
        values = v if isinstance(v, list) else [v]
        if not values:
            raise ValueError("the alpha schedule is empty; give one positive number or a non-empty list")
        for a in values:
            if not math.isfinite(a) or a <= 0:
                raise ValueError(
                    f"alpha must be a finite number > 0 (got {a}); α is the KL brake of the tilt "
                    "p_pre·exp(r̂/α): smaller means a stronger tilt, e.g. alpha = 0.1, or "
                    'alpha = "auto"'
                )
        return v

    @model_validator(mode="after")
    def _auto_fields(self) -> SamplerConfig:
        if not self.alpha_auto:
            # a default is fine (the stored JSON snapshot carries every field); a changed value
            # would be silently ignored
            given = [f for f in AUTO_ALPHA_FIELDS
                     if getattr(self, f) != type(self).model_fields[f].default]
            if given:
                raise ValueError(
                    f"[sampler.{given[0]}] is only used with alpha = \"auto\" (alpha is "
                    f"{self.alpha!r}); remove it or set alpha = \"auto\"")
        if self.alpha_min >= self.alpha_max:
            raise ValueError(f"[sampler.alpha_min] {self.alpha_min:g} must be below "
                             f"sampler.alpha_max = {self.alpha_max:g}")
        return self

    @property
    def alpha_auto(self) -> bool:
        """True for ``alpha = "auto"`` (α chosen per round by ``optimizer.campaign.auto_alpha``)."""
        return self.alpha == "auto"

    def alpha_for_round(self, tilted_round: int) -> float:
        """α for the ``tilted_round``-th round that uses the surrogate (0-based); with
        ``alpha = "auto"``, the α of a plain-prior round (its reward is 0: α does not matter)."""
        if isinstance(self.alpha, list):
            return float(self.alpha[min(tilted_round, len(self.alpha) - 1)])
        if isinstance(self.alpha, str):
            return min(max(1.0, self.alpha_min), self.alpha_max)
        return float(self.alpha)

    def das_options(self) -> DASOptions:
        """The options every chunk's ``sample`` call gets (α is per round)."""
        return DASOptions.model_validate(self.model_dump(exclude={"alpha", *AUTO_ALPHA_FIELDS}))


#: The ``[sampler]`` fields that only ``alpha = "auto"`` reads.
AUTO_ALPHA_FIELDS = ("kl_budget", "alpha_min", "alpha_max", "overopt_gap", "overopt_factor")


class WorkersConfig(_Frozen):
    """The Ray SMC worker pool: ``count`` actors, each round split into ``count·chunks_per_worker``
    chunks of ``particles_per_worker`` particles (seeded per chunk)."""

    count: int = Field(default=2, ge=1, le=1024, description="SMC worker actors in the Ray pool")
    particles_per_worker: int = Field(default=256, ge=2, le=10_000_000,
                                      description="particles of one chunk (`P` of one DAS run)")
    chunks_per_worker: int = Field(default=1, ge=1, le=1024,
                                   description="chunks per worker and round (each seeded apart)")
    cpus_per_worker: float = Field(default=1.0, gt=0, le=1024,
                                   description="Ray CPUs per worker (also its torch threads)")
    use_gpu: Literal["auto", "on", "off"] = Field(
        default="auto", description="auto: a GPU per worker when the cluster has them")
    max_chunk_retries: int = Field(default=3, ge=0, le=100,
                                   description="a dead worker's chunk is redone at most this often")
    resources: dict[str, float] = Field(
        default_factory=dict, max_length=16,
        description='custom Ray resources each worker asks for, e.g. {tiltloop_worker = 1}: '
                    'places workers only on nodes started with them (`ray start --resources`)')
    chunk_timeout_s: float = Field(
        default=3600.0, gt=0, le=7 * 86_400.0,
        description="seconds one chunk may run; past it the worker is replaced and the chunk redone")
    placement_timeout_s: float = Field(
        default=120.0, gt=0, le=86_400.0,
        description="seconds to wait for the cluster to place every worker before a round fails")

    @field_validator("resources", mode="before")
    @classmethod
    def _no_bool_amounts(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for name, amount in v.items():
                if isinstance(amount, bool):
                    raise ValueError(f"resource {name!r} = {amount!r} must be a number, not a boolean")
        return v

    @field_validator("resources")
    @classmethod
    def _resources_ok(cls, v: dict[str, float]) -> dict[str, float]:
        for name, amount in v.items():
            if not name.strip() or not _RESOURCE_RE.match(name):
                raise ValueError(f"resource name {name!r} must be 1-64 letters, digits, '_', '-', "
                                 "'.', ':', '/' (as given to `ray start --resources`)")
            if name in ("CPU", "GPU", "memory", "object_store_memory"):
                raise ValueError(f"resource {name!r} is set by workers.cpus_per_worker / "
                                 "workers.use_gpu, not workers.resources; name custom resources only")
            if not math.isfinite(amount) or amount < 0:
                raise ValueError(f"resource {name!r} = {amount!r} must be a finite number >= 0")
        return v

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
    ``manual`` oracle (a person: ``ask`` / ``tell``) defaults to ``q``: one batch at a time.

    Budget guards protect a paid lab: the campaign stops dispatching and turns ``paused`` (with
    the grouped failure reasons) after ``max_consecutive_failures`` failed queries in a row, or
    when more than ``max_failure_fraction`` of a round's queries failed; ``tiltloop resume``
    continues once the cause is fixed.

    Per-query retry limits (``optimizer.campaign.query_limits``): one query is submitted at most
    ``max_submit_attempts`` times (a lab answering 2xx without a job id, a client error on
    submit, a lab that keeps losing the job), with exponential backoff and jitter between
    resubmissions (``resubmit_backoff_s`` doubling up to ``resubmit_backoff_max_s``); a query at
    the oracle ``max_job_age_s`` after dispatch without a final answer (a lab answering 5xx,
    429, invalid JSON, or not at all) is cancelled there and fails. Failed queries count toward
    the budget guards above. A ``manual`` oracle has no job age limit (a person answers when
    the measurement is done)."""

    q: int = Field(default=8, ge=1, le=100_000, description="oracle queries per round")
    max_in_flight: int | None = Field(default=None, ge=1, le=1_000_000,
                                      description="queries at the oracle at once (default 2·q)")
    total: int = Field(default=64, ge=1, le=MAX_INT, description="oracle queries in all")
    stop_target: float | None = Field(
        default=None, description="stop once the best primary-objective value reaches this")
    poll_interval_s: float = Field(default=1.0, gt=0, le=3600)
    #: budget guard: pause after this many failed queries in a row (a broken lab, a wrong shape)
    max_consecutive_failures: int = Field(default=8, ge=1, le=1_000_000)
    #: budget guard: pause when more than this fraction of a round's finished queries failed
    max_failure_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    max_submit_attempts: int = Field(
        default=10, ge=1, le=1000,
        description="submissions of one query in all (the first included) before it fails")
    max_job_age_s: float = Field(
        default=7 * 86_400.0, ge=1.0, le=366 * 86_400.0,
        description="seconds at the oracle without a final answer before a query fails "
                    "(default 7 days; not for manual oracles)")
    resubmit_backoff_s: float = Field(
        default=2.0, ge=0.0, le=3600.0,
        description="first wait between resubmissions of one query (doubles, with jitter)")
    resubmit_backoff_max_s: float = Field(
        default=300.0, ge=0.0, le=86_400.0,
        description="longest wait between resubmissions of one query")

    @model_validator(mode="after")
    def _consistent(self) -> BudgetConfig:
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

    @model_validator(mode="after")
    def _backoff_order(self) -> BudgetConfig:
        if self.resubmit_backoff_max_s < self.resubmit_backoff_s:
            raise ValueError(
                f"[budget.resubmit_backoff_max_s] {self.resubmit_backoff_max_s:g} is below "
                f"budget.resubmit_backoff_s = {self.resubmit_backoff_s:g}; the cap must be at "
                "least the first wait")
        return self

    @property
    def in_flight_limit(self) -> int:
        return self.max_in_flight if self.max_in_flight is not None else 2 * self.q


class StorageConfig(_Frozen):
    """Where the campaign lives: a SQLAlchemy URL (``postgresql+psycopg://…`` or ``sqlite:///…``).

    Left out, ``run`` uses ``--url``, else ``$TILTLOOP_DATABASE_URL``, else
    ``sqlite:///tiltloop.db`` — the same database every other command reads. A relative SQLite
    path is resolved against the config file's folder.

    ``outage_window_s``: a driver that loses its database connection retries each unit of work
    (poll, dispatch, generate, record; all idempotent) with backoff for this long, logging a
    WARNING while it waits; past it the driver stops and names ``tiltloop resume``."""

    url: str | None = None
    outage_window_s: float = Field(
        default=120.0, ge=0, le=86_400,
        description="seconds a driver rides out a database outage (retrying each unit of work "
                    "with backoff) before it stops with the resume command; 0: stop at once")

    @field_validator("outage_window_s", mode="before")
    @classmethod
    def _no_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):  # TOML `true` would silently become 1 s
            raise ValueError(f"expected a number of seconds, got the boolean {str(v).lower()}")
        return v

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith("sqlite:///") or v.startswith("postgresql")):
            raise ValueError(
                f"storage URL {v!r} is neither sqlite:///PATH nor postgresql+psycopg://USER@HOST/DB"
            )
        return v


class HistoryConfig(_Frozen):
    """Warm start: results of other campaigns in the same database seed the surrogate.

    ``import_from = ["other-campaign"]``: their succeeded queries join the training data (same
    objectives; design shapes must match), with provenance kept (``tiltloop export`` names the
    source campaign of every row). They are not counted against this campaign's budget."""

    import_from: list[str] = Field(default_factory=list, max_length=64)

    @field_validator("import_from")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _NAME_RE.match(name):
                raise ValueError(f"campaign name {name!r} in history.import_from is not a valid name")
        if len(set(v)) != len(v):
            raise ValueError(f"history.import_from lists a campaign twice: {v}")
        return v


class RayConfig(_Frozen):
    """Ray: no address starts a local instance; an address (or ``RAY_ADDRESS``) joins a cluster.

    A driver on a joined cluster watches its head (GCS): gone for ``head_timeout_s``, the driver
    exits (status 4) with a message naming the address and ``tiltloop resume NAME``; the campaign
    is consistent in the database (as after any crash), and ``resume`` continues it once the
    cluster is back. (Ray cannot re-attach a driver to a restarted head without GCS fault
    tolerance, and ends the process itself after 60 s.)"""

    address: str | None = Field(default=None, pattern=r"^(auto|(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5})$",
                                description='"auto", "HOST:PORT" or "ray://HOST:PORT"; none: a local Ray')
    head_timeout_s: float = Field(
        default=20.0, gt=0, le=55.0,
        description="a joined cluster's head unreachable this long: the driver exits with the "
                    "resume command (below Ray's own 60 s, after which Ray ends the process)")
    worker_niceness: int | None = Field(
        default=None, ge=-20, le=19,
        description="niceness of a locally started Ray's workers (none: the driver's own; "
                    "Ray's default puts them 15 above, where other load starves the sampler; "
                    "below the driver's own needs root). A joined cluster keeps its nodes' "
                    "setting: `ray start --system-config={\"worker_niceness\": 0}`, an "
                    "increment over the niceness `ray start` runs at")


class CampaignConfig(_Frozen):
    """A whole campaign, as read from its TOML file: every component's own typed config, nested.

    One default per setting (the component's own); no free ``options`` tables; every rule a run
    depends on is checked here or in the preflight, before anything is written.
    """

    name: str
    seed: int = Field(default=0, ge=0, lt=2**63)
    prior: PriorConfig
    oracle: OracleConfig
    #: cheap evaluators screened before ``[oracle]`` each round (``config_fidelity``)
    oracles: list[CheapOracleConfig] = Field(default_factory=list, max_length=8)
    objectives: list[ObjectiveConfig] = Field(min_length=1, max_length=16)
    constraints: list[ConstraintConfig] = Field(
        default_factory=list, max_length=16,
        description="outcome constraints on oracle outputs (`optimizer.campaign.config_constraints`)")
    feature_map: FeatureMapConfig = PriorFeatures()
    surrogate: SurrogateConfig = SurrogateConfig()
    sampler: SamplerConfig = SamplerConfig()
    workers: WorkersConfig = WorkersConfig()
    budget: BudgetConfig = BudgetConfig()
    pipeline: PipelineConfig = PipelineConfig()
    history: HistoryConfig = HistoryConfig()
    storage: StorageConfig = StorageConfig()
    ray: RayConfig = RayConfig()

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        # The pre-0.2 form kept component options in free `options` tables; read them flat.
        for section in ("oracle", "feature_map", "sampler", "surrogate"):
            if isinstance(data.get(section), dict):
                data[section] = flatten_legacy(data[section])
        objectives = data.get("objectives")
        names = ([o.get("name") for o in objectives if isinstance(o, dict)]
                 if isinstance(objectives, list) else [])
        names += constraint_names(data.get("constraints"))  # the oracle reports them too
        data["oracle"] = fill_objectives(data.get("oracle"), [n for n in names if isinstance(n, str)])
        if isinstance(data.get("oracles"), list):  # cheap oracles default to the same names
            data["oracles"] = [{**o, "oracle": fill_objectives(flatten_legacy(o.get("oracle")), [
                n for n in names if isinstance(n, str)])} if isinstance(o, dict) else o
                for o in data["oracles"]]
        # A person measuring by hand takes one batch at a time (`ask`, measure, `tell`): there is
        # no latency to overlap, and a second plain batch before any result would spend budget.
        oracle, budget = data.get("oracle"), data.get("budget", {})
        if isinstance(oracle, dict) and oracle.get("kind") == "manual" and isinstance(budget, dict) \
                and budget.get("max_in_flight") is None:
            default_q = BudgetConfig.model_fields["q"].default
            data["budget"] = {**budget, "max_in_flight": budget.get("q", default_q)}
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
    def _cross(self) -> CampaignConfig:
        names = [o.name for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"[objectives] objective names must be unique, got {names}")
        if self.workers.particles_per_round < self.budget.q:
            raise ValueError(
                f"[workers.particles_per_worker] a round makes {self.workers.particles_per_round} "
                f"particles (workers.count x chunks_per_worker x particles_per_worker) but budget.q = "
                f"{self.budget.q}; raise workers.particles_per_worker"
            )
        reported = reported_objectives(self.oracle)
        missing = [n for n in names if n not in reported]
        if missing:
            raise ValueError(
                f"[oracle] the oracle reports {list(reported)} but the campaign's objectives need "
                f"{missing}; name the objectives as the oracle reports them (or set the oracle's "
                "objective names)")
        check_constraints(self.constraints, names, reported, self.oracle.kind)
        if self.name in self.history.import_from:
            raise ValueError("[history.import_from] a campaign cannot import its own history")
        for field in sorted({"seed", "maximize", "num_constraints"} & self.surrogate.model_fields_set):
            raise ValueError(
                f"[surrogate.{field}] is set by the loop (seed: the campaign seed; maximize: "
                "objectives.direction; num_constraints: [[constraints]]); remove it")
        check_pareto(self)
        if isinstance(self.oracle, KIND_MODELS["command"]):
            _refuse_secret_env(self.oracle.env)  # type: ignore[attr-defined]
        modelled = modelled_outputs(self).names  # what the multi-task GPs of [[oracles]] model
        check_oracles(self.oracles, campaign=self.name, primary=names[0], pipeline_mode=self.pipeline.mode,
                      reported=reported_objectives, needed=modelled[1:])
        for i, cheap in enumerate(self.oracles):
            if isinstance(cheap.oracle, KIND_MODELS["command"]):
                _refuse_secret_env(cheap.oracle.env, f"oracles.{i}.oracle")  # type: ignore[attr-defined]
        return self

    @property
    def primary_objective(self) -> ObjectiveConfig:
        return self.objectives[0]

    def surrogate_for_loop(self) -> SurrogateConfig:
        """The surrogate config the loop fits with: the seed from the campaign seed (GP subset
        choice and quasi-MC draws are reproducible); ``maximize`` stays True because the loop
        sign-flips minimized objectives before fitting (``rounds.training_data``)."""
        return self.surrogate.model_copy(update={"maximize": True, "seed": int(self.seed) % (2**31),
                                                 "num_constraints": len(self.constraints),
                                                 "reference_point": signed_reference(self)})

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON snapshot stored with the campaign (a storage URL's password is redacted)."""
        data = self.model_dump(mode="json")
        # set by the loop (surrogate_for_loop), not stored
        for derived in ("seed", "maximize", "num_constraints", "reference_point"):
            data["surrogate"].pop(derived, None)
        if data["storage"]["url"]:
            from storage.engine import redact

            data["storage"]["url"] = redact(data["storage"]["url"])
        return data

    def with_budget(self, total: int) -> CampaignConfig:
        """A copy with a new total budget (used to extend a finished campaign), re-validated."""
        data = self.to_json_dict()
        data["budget"]["total"] = total
        return CampaignConfig.model_validate(data)


def _refuse_secret_env(env: Any, where: str = "oracle") -> None:
    """The config is stored in the database as JSON (resume rebuilds the oracle from it), so a
    command oracle's ``env`` may hold settings, never secrets: a secret belongs in the
    environment of ``tiltloop run`` / ``resume``, which the command inherits."""
    if not isinstance(env, dict):
        return
    for name, value in env.items():
        if _SECRET_NAME.search(str(name)) or _SECRET_VALUE.match(str(value)):
            raise ValueError(
                f"[{where}.env.{name}] looks like a secret (value not shown); the config is "
                "stored in the campaign database, so do not put secrets in it: remove it here and "
                f"export {name} in the shell that runs `tiltloop run` / `tiltloop resume` (the "
                "command inherits that environment)")


