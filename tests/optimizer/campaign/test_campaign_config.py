"""Campaign config: valid files load; each bad field gives one message naming the field and file."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_io import load_config, parse_config
from optimizer.errors import CampaignConfigError
from optimizer.seeds import derive_seed, torch_generator

GOOD = """
name = "c1"
seed = 7
[prior]
name = "gmm-toy"
[oracle]
kind = "http"
base_url = "http://127.0.0.1:9/"
[[objectives]]
name = "y"
direction = "maximize"
[sampler]
alpha = [0.5, 0.2, 0.1]
num_steps = 20
[workers]
count = 2
particles_per_worker = 32
[budget]
q = 4
max_in_flight = 8
total = 16
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "campaign.toml"
    p.write_text(text)
    return p


def test_good_config_loads(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.name == "c1" and cfg.budget.in_flight_limit == 8
    assert [cfg.sampler.alpha_for_round(i) for i in range(5)] == [0.5, 0.2, 0.1, 0.1, 0.1]
    assert cfg.workers.particles_per_round == 64
    # JSON round trip (the stored snapshot rebuilds the same config) and frozen models.
    assert CampaignConfig.model_validate(cfg.to_json_dict()) == cfg
    with pytest.raises(ValidationError, match="frozen"):
        cfg.budget.q = 3  # type: ignore[misc]
    assert cfg.with_budget(32).budget.total == 32


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("alpha = [0.5, 0.2, 0.1]", "alpha = -1.0", "sampler.alpha", "alpha must be a finite number > 0"),
        ("alpha = [0.5, 0.2, 0.1]", "alpha = [0.5, 0.0]", "sampler.alpha", "got 0.0"),
        ("total = 16", "total = 2", "budget", "total budget 2 is below q = 4"),
        ("max_in_flight = 8", "max_in_flight = 2", "budget", "set budget.max_in_flight >= budget.q"),
        ('direction = "maximize"', 'direction = "up"', "objectives.0.direction", "'maximize' or 'minimize'"),
        ('kind = "http"', 'kind = "carrier-pigeon"', "oracle.kind",
         "unknown oracle kind 'carrier-pigeon'; choose one of"),
        ("base_url =", "url =", "oracle.url", "unknown field"),
        ("num_steps = 20", 'num_steps = 20\nresampling = "sytematic"', "sampler.resampling",
         "resampling='sytematic' is not a known choice; use one of:"),
        ("[sampler]", '[feature_map]\nkind = "pca"\n[sampler]', "feature_map.kind",
         "unknown feature_map kind 'pca'; choose one of: 'prior', 'identity'"),
        ("num_steps = 20", "num_steps = 20\nnum_stpes = 3", "sampler.num_stpes", "unknown field"),
        ("[sampler]", "[surrogate]\nnum_mc_samples = 0\n[sampler]", "surrogate.num_mc_samples",
         "Input should be greater than or equal to 1 (got 0)"),
        ("[sampler]", "[surrogate]\nseed = 3\n[sampler]", "surrogate.seed",
         "is set by the loop"),
        ('name = "c1"', 'name = "bad name!"', "name", "letters, digits"),
        ("particles_per_worker = 32", "particles_per_worker = 1", "workers.particles_per_worker",
         "greater than or equal to 2"),
    ],
)
def test_bad_field_is_named_with_file(tmp_path: Path, old: str, new: str, field: str, words: str) -> None:
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(CampaignConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg
    assert f"field `{field}`" in msg
    assert words in msg


def test_missing_section_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(CampaignConfigError, match=r"field `prior`: required field is missing"):
        load_config(_write(tmp_path, GOOD.replace('[prior]\nname = "gmm-toy"\n', "")))
    with pytest.raises(CampaignConfigError, match="is not valid TOML"):
        load_config(_write(tmp_path, "name = \n"))
    with pytest.raises(CampaignConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(CampaignConfigError,
                       match=r"(?s)<dict>.*field `objectives`: List should have at least 1 item"):
        parse_config({"name": "x", "prior": {"name": "p"}, "oracle": {"kind": "manual"}, "objectives": []})


def test_particles_per_round_must_cover_q(tmp_path: Path) -> None:
    text = (GOOD.replace("particles_per_worker = 32", "particles_per_worker = 2")
            .replace("count = 2", "count = 1"))
    with pytest.raises(CampaignConfigError, match="raise workers.particles_per_worker"):
        load_config(_write(tmp_path, text))


def test_seeds_are_deterministic_and_distinct() -> None:
    seeds = {derive_seed(1, r, c) for r in range(20) for c in range(8)}
    assert len(seeds) == 160
    assert derive_seed(1, 3, 2) == derive_seed(1, 3, 2) != derive_seed(2, 3, 2)
    assert derive_seed(1, 3, 2, "spacefill") != derive_seed(1, 3, 2)
    a = torch_generator(derive_seed(0, 1, 0))
    b = torch_generator(derive_seed(0, 1, 0))
    import torch
    assert torch.equal(torch.randn(5, generator=a), torch.randn(5, generator=b))


def test_dump_toml_round_trip(tmp_path: Path) -> None:
    from optimizer.campaign.config_io import dump_toml

    cfg = load_config(_write(tmp_path, GOOD))
    cfg2 = cfg.model_copy(update={"oracle": cfg.oracle.model_copy(
        update={"options": {"base_url": 'http://x/"q"', "timeout_s": 2.5, "retry": {"max_attempts": 2}}})})
    path = tmp_path / "again.toml"
    path.write_text(dump_toml(cfg2))
    assert load_config(path) == cfg2


SECRET = "ghp_s3cr3tTOKENvalue0123456789"


@pytest.mark.parametrize("where", [
    '[oracle]\nkind = "http"\ntoken = "{s}"\noptions = {{ base_url = "http://127.0.0.1:9/" }}\n',
    '[oracle]\nkind = "http"\noptions = {{ base_url = "http://127.0.0.1:9/", token = "{s}" }}\n',
    '[oracle]\nkind = "http"\noptions = {{ base_url = "http://127.0.0.1:9/" }}\n'
    '[surrogate]\noptions = {{ api_password = "{s}" }}\n',
    '[oracle]\nkind = "http"\noptions = {{ base_url = "http://127.0.0.1:9/" }}\n'
    '[budget]\nq = 4\ntotal = 16\nmisspelled = "{s}"\n',
])
def test_unknown_or_secret_field_value_never_echoed(tmp_path: Path, where: str) -> None:
    text = 'name = "c1"\n[prior]\nname = "gmm-toy"\n[[objectives]]\nname = "y"\n' + where.format(s=SECRET)
    with pytest.raises(CampaignConfigError) as ei:
        load_config(_write(tmp_path, text))
    msg = str(ei.value)
    assert SECRET not in msg and "s3cr3t" not in msg
    assert "campaign.toml" in msg


def _command_config(env: dict[str, str]) -> dict:
    return {"name": "c1", "prior": {"name": "gmm-toy"}, "objectives": [{"name": "y"}],
            "oracle": {"kind": "command", "options": {"argv": ["true"], "env": env}}}


@pytest.mark.parametrize("env", [{"LAB_API_TOKEN": "abc123"}, {"DB_PASSWORD": "hunter2"},
                                 {"HARMLESS": SECRET}])
def test_command_env_secret_refused_before_it_reaches_the_db(env: dict[str, str]) -> None:
    with pytest.raises(CampaignConfigError) as ei:
        parse_config(_command_config(env), "c.toml")
    msg = str(ei.value)
    name = next(iter(env))
    assert f"oracle.env.{name}" in msg and "export" in msg
    assert env[name] not in msg


def test_command_env_settings_kept_for_resume() -> None:
    cfg = parse_config(_command_config({"OMP_NUM_THREADS": "4", "LAB_MODE": "fast"}), "c.toml")
    assert cfg.to_json_dict()["oracle"]["env"] == {"OMP_NUM_THREADS": "4", "LAB_MODE": "fast"}


def test_default_in_flight_limit_lets_the_next_round_overlap() -> None:
    """Left out, max_in_flight is 2·q: a new round starts while the last q are still in flight
    (they are its pending points), so the loop's time overlaps the oracle's latency."""
    cfg = parse_config({"name": "c1", "prior": {"name": "gmm-toy"}, "objectives": [{"name": "y"}],
                        "oracle": {"kind": "http", "options": {"base_url": "http://127.0.0.1:9/"}},
                        "budget": {"q": 4, "total": 16}}, "c.toml")
    assert cfg.budget.max_in_flight is None and cfg.budget.in_flight_limit == 8


def test_manual_oracle_defaults_to_one_batch_in_flight(tmp_path: Path) -> None:
    cfg = parse_config({"name": "c1", "prior": {"name": "gmm-toy"}, "objectives": [{"name": "y"}],
                        "oracle": {"kind": "manual", "options": {"directory": str(tmp_path)}},
                        "budget": {"q": 3, "total": 6}}, "c.toml")
    assert cfg.budget.in_flight_limit == 3
