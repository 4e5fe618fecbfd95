"""README's campaign TOML runs as written against the bundled lab simulator serving the manifold
function (`python -m oracles.labsim --function manifold`): only the port and, to keep the test
short, the budget and sampler sizes are changed — through the same `--set` path users have."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from optimizer.campaign.config_io import apply_overrides, load_config
from optimizer.campaign.service import run_campaign
from oracles.labsim import LabSimulator
from oracles.simulated.manifold import ManifoldOracle

pytestmark = pytest.mark.slow  # the README campaign, run to its end: ~12 s on 2 cores

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_toml() -> str:
    """The first ```toml block of README's "Run a campaign" section."""
    section = README.read_text(encoding="utf-8").split("## Run a campaign", 1)[1]
    return re.search(r"```toml\n(.*?)```", section, re.S).group(1)


def test_readme_toml_runs_against_the_manifold_simulator(ray_session: str, tmp_path: Path) -> None:
    text = readme_toml()
    assert 'base_url = "http://127.0.0.1:8765"' in text and 'name = "manifold"' in text
    path = tmp_path / "campaign.toml"
    path.write_text(text)
    with LabSimulator(ManifoldOracle(seed=0)).start() as lab:
        config = apply_overrides(load_config(path), [
            f'oracle.base_url="{lab.url}"', f'storage.url="sqlite:///{tmp_path / "c.db"}"',
            "budget.total=8", "budget.q=4", "budget.max_in_flight=4", "budget.poll_interval_s=0.05",
            "sampler.num_steps=8", "workers.particles_per_worker=16", "workers.cpus_per_worker=0.5"])
        status = run_campaign(config, source=str(path))
        evaluations = lab.stats()["evaluations"]
    assert status.status == "completed" and status.results == 8 and status.queries["failed"] == 0
    assert len(evaluations) == 8 and max(evaluations.values()) == 1
