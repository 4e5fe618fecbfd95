"""Start and inspect campaigns (resume: ``optimizer.campaign.resume``): builds storage, oracle, Ray pool and driver from a config.

Order matters for "bad input writes nothing": :func:`preflight` checks everything a config
names (prior, oracle, storage URL) before the database is touched.

    >>> status = run_campaign(load_config("campaign.toml"), progress=print)   # doctest: +SKIP
    >>> status_of("c1", "sqlite:///tiltloop.db").line()                     # doctest: +SKIP
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from contextlib import contextmanager
from typing import Any

import ray

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_io import parse_config
from optimizer.campaign.driver import CampaignDriver, CampaignStatus, campaign_status
from optimizer.campaign.errors import CampaignStateError, PreflightError
from optimizer.campaign.oracle import build_oracle, check_oracle_reachable
from optimizer.campaign.rounds import RoundGenerator
from optimizer.workers.components import SurrogateAdapter, load_prior_bundle
from optimizer.workers.pool import PoolEvent, SupervisedPool
from optimizer.workers.smc_worker import SMCWorker, worker_options
from storage import Storage
from storage.errors import SchemaNotInitialized
from storage.migrate import upgrade

Progress = Callable[[str], None]


def preflight(config: CampaignConfig, *, source: str = "the campaign config") -> None:
    """Check that the prior exists and the oracle can be built and reached; raise
    :class:`PreflightError` naming the field and ``source``. Writes nothing."""
    from optimizer.errors import PriorError
    from optimizer.priors.registry import resolve

    try:
        resolve(config.prior.name)
    except PriorError as exc:
        raise PreflightError(f"{source}: field `prior.name`: {exc}") from None
    oracle = build_oracle(config, source=source)
    try:
        check_oracle_reachable(config, source=source)
    finally:
        oracle.close()


def open_storage(url: str, *, create: bool) -> Storage:
    """Open the store; with ``create`` an empty database gets the schema (``db upgrade``).
    Without it, a SQLite file that does not exist is an error (opening would create it)."""
    if not create and url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        if str(path) not in ("", ":memory:") and not path.exists():
            raise CampaignStateError(
                f"no database at {path}; start a campaign with `tiltloop run CONFIG` (or "
                "`tiltloop demo`), or pass --url / set TILTLOOP_DATABASE_URL to your database")
    try:
        return Storage.open(url)
    except SchemaNotInitialized:
        if not create:
            raise
        upgrade(url)
        return Storage.open(url)


@contextmanager
def ray_runtime(config: CampaignConfig) -> Iterator[None]:
    """Join ``ray.address`` (or ``RAY_ADDRESS``), else start a local Ray; reuse one already up."""
    if ray.is_initialized():
        yield
        return
    address = config.ray.address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "configure_logging": False}
    if address is None:
        kwargs["num_cpus"] = max(1, os.cpu_count() or 1)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise PreflightError(f"field `ray.address`: cannot join Ray at {address!r}: {exc}") from None
    try:
        yield
    finally:
        ray.shutdown()


def make_pool(config: CampaignConfig) -> SupervisedPool:
    """The supervised pool of SMC workers (each loads the prior once)."""
    w = config.workers
    return SupervisedPool(
        SMCWorker, size=w.count,
        actor_args=(config.prior.name, config.feature_map.kind),
        actor_kwargs={"device": config.prior.device, "num_threads": max(1, int(w.cpus_per_worker))},
        actor_options=worker_options(w.cpus_per_worker, w.use_gpu, w.count),
        max_retries=w.max_chunk_retries,
    )


def make_generator(config: CampaignConfig, pool: SupervisedPool, *,
                   on_event: Callable[[PoolEvent], None] | None = None) -> RoundGenerator:
    """A round generator whose surrogate uses the prior's feature map (loaded in the driver)."""
    bundle = load_prior_bundle(config.prior.name, config.feature_map.kind)
    surrogate = SurrogateAdapter(bundle, config.surrogate_for_loop())
    return RoundGenerator(config, pool, surrogate, on_event=on_event)


def drive(config: CampaignConfig, storage: Storage, *, progress: Progress | None = None,
          once: bool = False, timeout_s: float | None = None,
          on_event: Callable[[PoolEvent], None] | None = None) -> CampaignStatus:
    """Run the driver for a campaign that exists in ``storage`` (Ray must be up)."""
    oracle = build_oracle(config)
    pool: SupervisedPool | None = None

    def events(ev: PoolEvent) -> None:
        if ev.kind == "replaced" and progress is not None:
            progress(f"SMC worker in slot {ev.slot} died on chunk {ev.chunk}; started a "
                     f"replacement and redid the chunk (attempt {ev.attempt + 1})")
        if on_event is not None:
            on_event(ev)

    def generator() -> RoundGenerator:
        nonlocal pool
        pool = make_pool(config)
        return make_generator(config, pool, on_event=events)

    driver = CampaignDriver(config, storage, oracle, make_generator=generator, progress=progress)
    try:
        return driver.run(once=once, timeout_s=timeout_s)
    finally:
        driver.close()
        if pool is not None:
            pool.shutdown()


def run_campaign(config: CampaignConfig, *, progress: Progress | None = None,
                 source: str = "the campaign config", timeout_s: float | None = None,
                 once: bool = False) -> CampaignStatus:
    """Create the campaign named in ``config`` and run it to its budget."""
    preflight(config, source=source)
    storage = open_storage(config.storage.url, create=True)
    try:
        storage.create_campaign(config.name, config.to_json_dict(), budget=config.budget.total)
        with ray_runtime(config):
            return drive(config, storage, progress=progress, timeout_s=timeout_s, once=once)
    finally:
        storage.close()


def load_campaign_config(storage: Storage, name: str) -> CampaignConfig:
    """The config snapshot stored with campaign ``name``."""
    rec = storage.load_campaign(name)
    return parse_config(rec.config, f"the config stored with campaign {name!r}")


def status_of(name: str, url: str) -> CampaignStatus:
    """Status of one stored campaign."""
    with open_storage(url, create=False) as storage:
        return campaign_status(storage, name, load_campaign_config(storage, name))
