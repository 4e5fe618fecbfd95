"""``tiltloop demo``: a complete campaign on this CPU in a few minutes, then its report.

1. start the lab simulator (a real HTTP job API, in a background thread) over a simulated
   oracle matching the prior: the manifold problem for "manifold", the DAS paper's toy reward
   `r(x) = −x₁²/100 − x₂²` for "gmm-toy", for "digits" the log-odds that an 8x8 image reads as
   a 3 minus a penalty off the real digits (the campaign benchmark's digits oracle);
2. load the example config (``optimizer/campaign/examples/demo-<prior>.toml``), point it at the
   simulator and a SQLite file in ``workdir``, save it there as ``demo.toml``;
3. run the campaign (local Ray, SMC workers, surrogate, exactly-once dispatch);
4. write the report with ``report(storage, name, folder)`` (the CLI passes the dashboard's
   one-file writer) to ``workdir/report`` (a rerun in the same folder runs campaign ``demo-2``
   and writes ``workdir/report-demo-2``: nothing is overwritten).

    >>> result = run_demo(Path("tiltloop-demo"), progress=print, report=write)  # doctest: +SKIP
"""
from __future__ import annotations

from tiltloop.toml import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.campaign.config_io import dump_toml, parse_config
from optimizer.campaign.service import open_storage, run_campaign
from optimizer.errors import ConfigError
from oracles.labsim import LabSimulator
from oracles.simulated.base import SimulatedOracle

DEMO_PRIORS = ("manifold", "gmm-toy", "digits")


class ToyRewardOracle(SimulatedOracle):
    """The DAS paper's toy reward `r(x) = −x₁²/100 − x₂²` on 2-d designs (objective "reward")."""

    def __init__(self, **kw: Any) -> None:
        self.objectives = ("reward",)
        super().__init__(**kw)

    def check_design(self, design: np.ndarray) -> np.ndarray:
        design = super().check_design(design)
        if design.size != 2:
            raise ValueError(f"expected a 2-d design, got shape {design.shape}")
        return design.reshape(2)

    def score(self, design: np.ndarray) -> dict[str, float]:
        return {"reward": float(-design[0] ** 2 / 100.0 - design[1] ** 2)}


def demo_config_text(prior: str) -> str:
    """The packaged example config for ``prior``."""
    if prior not in DEMO_PRIORS:
        raise ConfigError(f"demo prior {prior!r} is not one of {', '.join(DEMO_PRIORS)}")
    examples = resources.files("optimizer.campaign").joinpath("examples")
    return examples.joinpath(f"demo-{prior}.toml").read_text()


def _manifold_available() -> bool:
    from optimizer.priors.registry import BUNDLED

    path = BUNDLED["manifold"].path
    return path is not None and (path / "config.json").is_file()


def run_demo(workdir: Path, *, progress: Callable[[str], None] = print, prior: str = "manifold",
             quick: bool = False,
             report: Callable[[Any, str, Path], Path] | None = None) -> dict[str, Any]:
    """Run the demo campaign in ``workdir`` (see the module docstring); ``quick`` shrinks it to
    a smoke test (fewer particles, steps and queries). ``report(storage, name, folder)`` writes
    the campaign's report into ``folder`` and returns its page (None: no report, ``"report"`` is
    None in the result)."""
    say = progress
    if prior == "manifold" and not _manifold_available():
        say("the bundled manifold prior is not installed; using the gmm-toy prior")
        prior = "gmm-toy"
    data = tomllib.loads(demo_config_text(prior))
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{workdir / 'tiltloop-demo.db'}"
    data["storage"]["url"] = url
    if quick:
        data["sampler"]["num_steps"] = 10
        data["workers"]["particles_per_worker"] = 32
        data["budget"].update(q=4, max_in_flight=8, total=12, poll_interval_s=0.05)
    with open_storage(url, create=True) as storage:  # a rerun gets a new campaign name
        taken = {c.name for c in storage.list_campaigns()}
    name, n = "demo", 1
    while name in taken:
        n += 1
        name = f"demo-{n}"
    data["name"] = name
    oracle = demo_oracle(prior)
    with LabSimulator(oracle).start() as lab:
        data["oracle"]["base_url"] = lab.url
        config = parse_config(data, f"the demo config ({prior})")
        config_path = workdir / ("demo.toml" if name == "demo" else f"{name}.toml")
        config_path.write_text(dump_toml(config))
        say(f"lab simulator listening on {lab.url}; campaign {name!r}, database {url}")
        status = run_campaign(config, progress=say, source=str(config_path))
        evaluations: dict[str, int] = lab.stats()["evaluations"]
    page = None
    if report is not None:
        with open_storage(url, create=False) as storage:
            # a rerun in the same folder is a new campaign with its own report: none is overwritten
            page = report(storage, name, workdir / ("report" if name == "demo" else f"report-{name}"))
    return {"campaign": name, "prior": prior, "database": url, "config": str(config_path),
            "queries": sum(status.queries.values()), "results": status.results,
            "objective": status.objective, "best": status.best, "report": None if page is None else str(page),
            "max_evaluations_per_key": max(evaluations.values(), default=0)}


def demo_oracle(prior: str) -> SimulatedOracle:
    """The simulated oracle that matches the demo prior (seeded, a little noise)."""
    if prior == "manifold":
        from oracles.simulated.manifold import ManifoldOracle

        return ManifoldOracle(noise_std=0.05, seed=0)
    if prior == "digits":
        from oracles.simulated.digits import DigitScorerOracle

        return DigitScorerOracle.lab(3, objective="value", noise_std=0.05, seed=0)
    return ToyRewardOracle(noise_std=0.01, seed=0)
