"""Start and inspect campaigns (resume: ``optimizer.campaign.resume``): builds storage, oracle,
Ray pool and driver from a config.

Order matters for "bad input writes nothing": :func:`preflight` checks everything a config
names (prior, oracle, storage URL) before the database is touched.

    >>> status = run_campaign(load_config("campaign.toml"), progress=print)   # doctest: +SKIP
    >>> status_of("c1", "sqlite:///tiltloop.db").line()                     # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import ray

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_constraints import recorded_outputs
from optimizer.campaign.config_io import parse_config
from optimizer.campaign.config_oracle import is_pull
from optimizer.campaign.driver import (
    CampaignDriver,
    CampaignStatus,
    DriverObserver,
    campaign_status,
    outage_retry,
)
from optimizer.campaign.lease import DEFAULT_TTL_S, DriverLease, driver_owner
from optimizer.campaign.oracle import build_oracle, check_oracle_reachable
from optimizer.campaign.rounds import RoundGenerator
from optimizer.campaign.surrogate import SurrogateAdapter
from optimizer.errors import CampaignStateError, PreflightError
from optimizer.workers.components import load_feature_bundle, load_prior_bundle
from optimizer.workers.pool import PoolEvent, SupervisedPool
from optimizer.workers.smc_worker import SMCWorker, worker_demand
from storage import Storage
from storage.errors import SchemaNotInitialized
from storage.migrate import upgrade

Progress = Callable[[str], None]
log = logging.getLogger(__name__)


def preflight(config: CampaignConfig, *, source: str = "the campaign config") -> None:
    """Check everything the config names before anything is written: the prior loads, the oracle
    can be built and reached, and — where the oracle says what it takes (an HTTP lab's
    ``GET /health``, a simulated oracle) — its design shape and objective names match the
    prior's designs and the campaign's objectives.

    Raises:
        PreflightError: naming ``source``, the field and the remedy. Writes nothing.
    """
    from optimizer.errors import PriorError

    try:
        bundle = load_prior_bundle(config.prior.name, config.feature_map.kind)
    except PriorError as exc:
        raise PreflightError(f"{source}: field `prior.name`: {exc}") from None
    check_ray_reachable(config, source=source)
    check_worker_resources(config, source=source)
    if config.oracles:  # cheap evaluators ([[oracles]]): built, reached, design shape checked
        from optimizer.campaign.fidelity import check_cheap_oracles

        check_cheap_oracles(config, design_shape(bundle.prior), source=source)
    if is_pull(config.oracle):
        return  # labs connect to the service: nothing to reach from here
    oracle = build_oracle(config, source=source)
    try:
        check_oracle_reachable(config, source=source)
        _check_oracle_matches(config, oracle, design_shape(bundle.prior), source=source)
    finally:
        oracle.close()


def check_ray_reachable(config: CampaignConfig, *, source: str, timeout_s: float = 5.0) -> None:
    """An explicit Ray address (``ray.address`` or ``RAY_ADDRESS``; not "auto") must accept a TCP
    connection, so a typo fails before the campaign row exists, not at its first round."""
    import socket

    address = config.ray.address or os.environ.get("RAY_ADDRESS") or None
    if address is None or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        field = "ray.address" if config.ray.address else "$RAY_ADDRESS"
        raise PreflightError(f"{source}: field `{field}`: no Ray cluster answers at {address!r} "
                             f"({exc}); start it (`ray start --head`) or fix the address") from None


def check_worker_resources(config: CampaignConfig, *, source: str) -> None:
    """The Ray cluster can hold ``workers`` (count × CPUs, GPUs, custom resources) and has a GPU
    when ``use_gpu = "on"``: checked before the campaign is written. A Ray already up in this
    process (the service) or an explicit address is asked (joined briefly); a local Ray, not
    started yet, is judged by this machine (its CPUs, its GPUs, no custom resources).

    Raises:
        PreflightError: naming ``source``, the fields and what the cluster has.
    """
    from optimizer.errors import WorkerPoolError
    from optimizer.workers.placement import check_cluster

    w = config.workers
    address = config.ray.address or os.environ.get("RAY_ADDRESS") or None
    if not ray.is_initialized() and address is None:
        _check_local_machine(config, source=source)
        return
    try:
        if ray.is_initialized():
            check_cluster(worker_demand(w.count, w.cpus_per_worker, w.use_gpu, w.resources))
        else:
            with ray_runtime(config):
                check_cluster(worker_demand(w.count, w.cpus_per_worker, w.use_gpu, w.resources))
    except PreflightError as exc:
        raise PreflightError(f"{source}: {exc}") from None
    except WorkerPoolError as exc:
        raise PreflightError(f"{source}: fields `workers`: {exc}") from None


def _check_local_machine(config: CampaignConfig, *, source: str) -> None:
    w = config.workers
    if w.use_gpu == "on":
        import torch

        if not torch.cuda.is_available():
            raise PreflightError(
                f"{source}: field `workers.use_gpu`: \"on\" but this machine has no GPU that "
                "torch can use (a local Ray would have none); use \"auto\" or \"off\", or join "
                "a cluster with GPUs (`ray.address`)")
    if w.resources:
        raise PreflightError(
            f"{source}: field `workers.resources`: {sorted(w.resources)} are custom resources of "
            "a Ray cluster's nodes, and a local Ray has none; join a cluster whose nodes were "
            "started with them (`ray.address`, `ray start --resources`) or remove the table")
    cpus = max(1, os.cpu_count() or 1)
    if w.count * w.cpus_per_worker > cpus + 1e-9:
        raise PreflightError(
            f"{source}: fields `workers.count` × `workers.cpus_per_worker`: {w.count} × "
            f"{w.cpus_per_worker:g} needs {w.count * w.cpus_per_worker:g} CPUs, and a local Ray "
            f"on this machine has {cpus}; lower them, or join a larger cluster (`ray.address`)")


def design_shape(prior: Any) -> tuple[int, ...]:
    """The shape of one design the prior makes (one zero latent, decoded)."""
    import torch

    with torch.no_grad():
        x = torch.zeros((1, *prior.latent_shape), dtype=prior.dtype, device=prior.device)
        return tuple(int(n) for n in prior.decode(x).shape[1:])


def _check_oracle_matches(config: CampaignConfig, oracle: Any, shape: tuple[int, ...], *,
                          source: str) -> None:
    from oracles.errors import OracleError
    from oracles.shape import check_design_shape, describe_oracle

    from oracles.factory import HttpOracleConfig

    oracle_config = config.oracle
    if oracle_config.kind == "http":
        assert isinstance(oracle_config, HttpOracleConfig)  # the "http" model extends the factory's
        where = f"the oracle at {oracle_config.base_url}"
    else:
        where = f"the {oracle_config.kind!r} oracle"
    try:
        desc = describe_oracle(oracle)
        if desc is not None:
            check_design_shape(desc.design_shape, shape, where=where, prior=config.prior.name)
    except OracleError as exc:
        raise PreflightError(f"{source}: field `oracle`: {exc}") from None
    if desc is not None and desc.objectives is not None:
        missing = [n for n in recorded_outputs(config) if n not in desc.objectives]
        if missing:
            field = "objectives" if missing[0] in [o.name for o in config.objectives] else "constraints"
            raise PreflightError(
                f"{source}: field `{field}`: {where} reports objectives {list(desc.objectives)} "
                f"but the campaign needs {missing}; name the [[{field}]] as the oracle reports them")


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
    """Join ``ray.address`` (or ``RAY_ADDRESS``), else start a local Ray (every listener on
    127.0.0.1, no dashboard); reuse one already up. A Ray this
    call started is shut down on the way out — also after an error or Ctrl-C — so no raylet is
    left orphaned. Ray's start-up chatter goes to the debug log. On a joined cluster a
    :class:`~optimizer.workers.head_watch.HeadWatch` ends the driver with the resume command
    when the head is gone for ``ray.head_timeout_s``."""
    if ray.is_initialized():
        yield
        return
    address = config.ray.address or os.environ.get("RAY_ADDRESS") or None
    ray_init(config.ray.address, worker_niceness=config.ray.worker_niceness)
    watch = None
    if address is not None:  # a joined cluster: its head may go away under us
        from optimizer.workers.head_watch import HeadWatch

        gcs = ray.get_runtime_context().gcs_address
        watch = HeadWatch(gcs, campaign=config.name, timeout_s=config.ray.head_timeout_s).start()
    try:
        yield
    finally:
        if watch is not None:
            watch.stop()
        ray.shutdown()


def ray_init(address: str | None = None, *, field: str = "ray.address",
             worker_niceness: int | None = None) -> None:
    """Join ``address`` (else ``RAY_ADDRESS``), else start a local Ray bound to 127.0.0.1 only
    with one CPU per core and no dashboard (``ray_runtime``'s start, for a caller that keeps
    Ray up itself, as ``tiltloop serve`` does).

    A local Ray runs its workers at niceness ``worker_niceness`` (default: this process's own),
    not 15 above it (Ray's default), at which any other load on the host starves the sampler. A
    joined cluster keeps the niceness its nodes were started with (``ray start --system-config``).

    Raises:
        PreflightError: naming ``field`` when the cluster cannot be joined or started.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "configure_logging": True, "logging_level": logging.WARNING}
    if address is None:
        kwargs["num_cpus"] = max(1, os.cpu_count() or 1)
        kwargs["_node_ip_address"] = "127.0.0.1"
        kwargs["_system_config"] = {"worker_niceness": _niceness_increment(worker_niceness)}
    try:
        with _quiet_stderr(), _loopback_node(address is None):
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if ray.is_initialized():
            ray.shutdown()
        raise PreflightError(f"field `{field}`: cannot join Ray at {address!r}: {exc}") from None


def _niceness_increment(target: int | None) -> int:
    """Ray's ``worker_niceness``: an increment its workers add to the raylet's niceness (which
    is this process's), so a target niceness becomes ``target - os.nice(0)``.

    Raises:
        PreflightError: a target below this process's niceness without root (only a privileged
            process may lower niceness; Ray would start the workers at its default instead).
    """
    own = os.nice(0)
    if target is None:
        return 0
    if target < own and os.geteuid() != 0:
        raise PreflightError(
            f"field `ray.worker_niceness` = {target}: this process runs at niceness {own} and may "
            f"not lower its workers' below that without privileges; use a value >= {own} or omit "
            "it (workers at the driver's own niceness)")
    return int(target) - own


@contextmanager
def _loopback_node(local: bool) -> Iterator[None]:
    """For a local Ray: keep its node IP 127.0.0.1, so every listener binds loopback.

    ``ray.init(_node_ip_address="127.0.0.1")`` alone is not enough: Ray (2.5x-2.6x) replaces a
    loopback node IP with the machine's routable one unless clusters are disabled for the
    process, and its servers (GCS, raylet, object manager, core workers, dashboard and runtime-env
    agents, metrics exporter) then bind that address or every interface. Ray reads the switch
    (``ray_constants.ENABLE_RAY_CLUSTER``, the ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` setting) at
    import, so it is set on the module for the duration of the start only.
    ``tests/optimizer/workers/test_ray_loopback.py`` checks every listener."""
    if not local:
        yield
        return
    from ray._private import ray_constants

    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Ray prints its start-up banner and warnings on stderr from C++ and Python alike: send
    them to a temporary file and log them at debug level."""
    import tempfile

    fd = sys.stderr.fileno() if hasattr(sys.stderr, "fileno") else None
    try:
        saved = os.dup(fd) if fd is not None else None
    except (OSError, ValueError):  # a captured stderr without a real descriptor
        saved = None
    if saved is None or fd is None:
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    log.debug("ray: %s", line)


def make_pool(config: CampaignConfig) -> SupervisedPool:
    """The supervised pool of SMC workers (each loads the prior once). The cluster is checked
    for room for every worker and a placement group reserves it (``optimizer.workers.placement``);
    a prior given as a local folder travels through the object store to nodes that cannot read
    it (``optimizer.workers.prior_files``), when the cluster has nodes besides the driver's.

    Raises:
        WorkerPoolError: the cluster cannot hold the workers, or not within
            ``workers.placement_timeout_s``.
        PreflightError: ``workers.use_gpu = "on"`` on a cluster without a GPU; a prior folder
            too large to ship.
    """
    from optimizer.workers.prior_files import pack_prior

    w = config.workers
    demand = worker_demand(w.count, w.cpus_per_worker, w.use_gpu, w.resources)
    # one node (a local Ray): every worker reads the folder itself, nothing to read and ship
    packed = pack_prior(config.prior.name) if _has_other_nodes() else None
    kwargs: dict[str, Any] = {"device": config.prior.device,
                              "num_threads": max(1, int(w.cpus_per_worker))}
    if packed is not None:
        kwargs["prior_files"] = ray.put(packed)  # resolved to the files in each worker
    return SupervisedPool(
        SMCWorker, size=w.count,
        actor_args=(config.prior.name, config.feature_map.kind),
        actor_kwargs=kwargs, demand=demand, ready_method="ping",
        max_retries=w.max_chunk_retries, chunk_timeout_s=w.chunk_timeout_s,
        placement_timeout_s=w.placement_timeout_s,
    )


def make_generator(config: CampaignConfig, pool: SupervisedPool, *,
                   on_event: Callable[[PoolEvent], None] | None = None) -> RoundGenerator:
    """A round generator whose surrogate uses the prior's feature map (loaded in the driver; the
    diffusion prior itself is loaded only by the workers)."""
    bundle = load_feature_bundle(config.prior.name, config.feature_map.kind)
    surrogate = SurrogateAdapter(bundle, config.surrogate_for_loop())
    return RoundGenerator(config, pool, surrogate, on_event=on_event)


def _has_other_nodes() -> bool:
    """Whether the joined Ray cluster has a live node besides this driver's."""
    here = ray.get_runtime_context().get_node_id()
    return any(n.get("Alive") and n.get("NodeID") != here for n in ray.nodes())


#: Makes (or lends) the worker pool of a campaign; ``tiltloop serve`` shares one per prior.
PoolFactory = Callable[[CampaignConfig], Any]


def drive(config: CampaignConfig, storage: Storage, *, progress: Progress | None = None,
          once: bool = False, timeout_s: float | None = None,
          on_event: Callable[[PoolEvent], None] | None = None, lease_owner: str | None = None,
          lease_ttl_s: float = DEFAULT_TTL_S, should_stop: Callable[[], bool] | None = None,
          observer: DriverObserver | None = None,
          pool_factory: PoolFactory | None = None) -> CampaignStatus:
    """Run the driver for a campaign that exists in ``storage``. Ray starts (or is joined) only
    when a round must be generated — polling, dispatching and ``tiltloop ask`` for a batch that
    is already planned need no workers — and a Ray started here is shut down on the way out.
    A paused, cancelled or completed campaign is not driven: its status comes back as it is
    (a completed one's cheap-oracle answers still out are collected first, see
    ``optimizer.campaign.fidelity_collect``).
    The driver holds the campaign's lease (``optimizer.campaign.lease``): a second driver on the
    same campaign is refused before it touches the oracle.

    For the service: ``lease_owner`` / ``lease_ttl_s`` name the replica holding the lease,
    ``should_stop`` ends the run at the next pass (shutdown), ``observer`` sees rounds and
    results (metrics), and ``pool_factory`` lends a shared worker pool (not shut down here)."""
    # the start rides out a database outage like every later unit of work (a supervisor that
    # restarts `tiltloop resume` while the database is down does not loop on exit 2)
    start = outage_retry(config, storage, should_stop=should_stop)
    rec = start.call(lambda: storage.load_campaign(config.name), "reading the campaign")
    from optimizer.campaign.config_fidelity import refuse_child

    refuse_child(config.name, rec.config)  # a cheap oracle's log is driven by its parent only
    if rec.status != "active":
        if rec.status == "completed" and config.oracles and not once:
            # cheap answers its finish gave up on (wait_s) are collected, the campaign stays
            # completed (optimizer.campaign.fidelity_collect)
            from optimizer.campaign.fidelity_collect import collect_cheap_answers

            collect_cheap_answers(config, storage, progress=progress, lease_owner=lease_owner,
                                  lease_ttl_s=lease_ttl_s, should_stop=should_stop)
        return campaign_status(storage, config.name, config)
    runtime = ExitStack()
    try:
        # one driver per campaign; taking it again after a lost reply renews it (same owner)
        owner = lease_owner or driver_owner()
        lease = start.call(lambda: runtime.enter_context(DriverLease(
            storage, config.name, owner=owner, ttl_s=lease_ttl_s)), "taking the driver lease")
        while True:
            version = storage.current_config_version(config.name)
            driver, pools = _one_driver(config, storage, runtime, progress=progress,
                                        on_event=on_event, version=version,
                                        pool_factory=pool_factory)
            driver.lease = lease
            driver.observer = observer
            driver.should_stop = should_stop
            try:
                status = driver.run(once=once, timeout_s=timeout_s)
            finally:
                driver.close()
                for pool in pools:
                    pool.shutdown()
            if not driver.config_changed:
                return status
            config = load_campaign_config(storage, config.name)  # a new version: rebuild all
    finally:
        runtime.close()


def _one_driver(config: CampaignConfig, storage: Storage, runtime: ExitStack, *,
                progress: Progress | None, on_event: Callable[[PoolEvent], None] | None,
                version: int, pool_factory: PoolFactory | None = None,
                ) -> tuple[CampaignDriver, list[SupervisedPool]]:
    """A driver whose generator (and Ray, and the worker pool) is built on first use, and the
    list that will hold its pool (the caller shuts it down; a lent pool is not listed)."""
    pools: list[SupervisedPool] = []

    def events(ev: PoolEvent) -> None:
        if ev.kind == "replaced" and progress is not None:
            progress(f"SMC worker in slot {ev.slot} died on chunk {ev.chunk}; started a "
                     f"replacement and redid the chunk (attempt {ev.attempt + 1})")
        if on_event is not None:
            on_event(ev)

    def generator() -> RoundGenerator:
        runtime.enter_context(ray_runtime(config))
        if pool_factory is not None:
            return make_generator(config, pool_factory(config), on_event=events)
        pools.append(make_pool(config))
        return make_generator(config, pools[-1], on_event=events)

    oracle = None if is_pull(config.oracle) else build_oracle(config)
    driver = CampaignDriver(config, storage, oracle, make_generator=generator,
                            progress=progress, config_version=version)
    return driver, pools


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths where two config snapshots differ (``storage`` is where a campaign lives,
    not what it is, so it is left out)."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        if path == "storage":
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{path}.")
        elif a != b:
            out.append(path)
    return out


def check_imports(config: CampaignConfig, storage: Storage, *, source: str) -> None:
    """``history.import_from``: each campaign exists in this database, reports the same
    objectives (names and directions) and has designs of the prior's shape.

    Raises:
        PreflightError: naming the field, the campaign and what differs. Writes nothing.
    """
    from storage.errors import NotFound

    field = "history.import_from"
    if not config.history.import_from:
        return
    shape: tuple[int, ...] | None = None
    for name in config.history.import_from:
        try:
            other = load_campaign_config(storage, name)
        except NotFound:
            raise PreflightError(f"{source}: field `{field}`: no campaign {name!r} in this database; "
                                 "`tiltloop status` lists them") from None
        mine = [(o.name, o.direction) for o in config.objectives]
        theirs = [(o.name, o.direction) for o in other.objectives]
        if mine != theirs:
            raise PreflightError(f"{source}: field `{field}`: campaign {name!r} has objectives "
                                 f"{theirs}, this one {mine}; only results of the same objectives "
                                 "can be imported")
        done = storage.list_queries(name, statuses=("succeeded",), with_design=True)[:1]
        if done and done[0].design is not None:
            if shape is None:
                shape = design_shape(load_prior_bundle(config.prior.name, config.feature_map.kind).prior)
            if tuple(done[0].design.shape) != shape:
                raise PreflightError(
                    f"{source}: field `{field}`: campaign {name!r} has designs of shape "
                    f"{tuple(done[0].design.shape)}, this campaign's prior makes {shape}")


def start_or_resume(config: CampaignConfig, storage: Storage, *, source: str,
                    progress: Progress | None = None) -> bool:
    """Create the campaign, or accept an existing one stored with the same config (an idempotent
    start: a restart loop may run the same file again). Returns True when it was created.

    Raises:
        CampaignStateError: the name is taken by a campaign with a different config (the fields
            that differ are named), or by a cancelled campaign.
        PreflightError: a cheap oracle's log name is taken by another campaign.
    """
    from optimizer.campaign.config_fidelity import check_child_names
    from storage.errors import CampaignExists, IntegrityViolation, NotFound

    check_child_names(config.name, list(config.oracles), storage, source=source)
    try:
        rec = storage.load_campaign(config.name)
    except NotFound:
        try:
            storage.create_campaign(config.name, config.to_json_dict(), budget=config.budget.total)
            return True
        except (CampaignExists, IntegrityViolation) as exc:
            # Another `run` created it between our read and our write (two drivers started
            # together): go on as if it had existed; the driver lease then decides who drives.
            try:
                rec = storage.load_campaign(config.name)
            except NotFound:
                raise exc from None
    stored = parse_config(rec.config, f"the config stored with campaign {config.name!r}")
    diff = config_differences(stored.to_json_dict(), config.to_json_dict())
    if diff:
        raise CampaignStateError(
            f"campaign {config.name!r} already exists with a different config ({', '.join(diff[:8])} "
            f"differ{'s' if len(diff) == 1 else ''} from {source}); store the new config as a new "
            f"version with `tiltloop campaign config {config.name} {source}`, continue the stored "
            f"one with `tiltloop resume {config.name}`, or choose another name")
    if rec.status == "cancelled":
        raise CampaignStateError(f"campaign {config.name!r} was cancelled; it cannot run again "
                                 f"(`tiltloop campaign delete {config.name}` frees the name)")
    if progress is not None:
        progress(f"campaign {config.name!r} already exists with this config ({rec.status}); "
                 "continuing it from the database")
    return False


def run_campaign(config: CampaignConfig, *, url: str | None = None, progress: Progress | None = None,
                 source: str = "the campaign config", timeout_s: float | None = None,
                 once: bool = False) -> CampaignStatus:
    """Create the campaign named in ``config`` (or continue it, when it exists with the same
    config) and run it to its budget. ``url`` (else ``storage.url``, else
    ``$TILTLOOP_DATABASE_URL``, else ``sqlite:///tiltloop.db``) says which database."""
    from storage.engine import default_url

    preflight(config, source=source)
    storage = open_storage(url or config.storage.url or default_url(), create=True)
    try:
        check_imports(config, storage, source=source)
        start_or_resume(config, storage, source=source, progress=progress)
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
