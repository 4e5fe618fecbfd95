"""``[[oracles]]`` (cheap evaluators) in a campaign config: defaults, and each bad value refused
with an error naming the field."""
from __future__ import annotations

from typing import Any

import pytest

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_io import CampaignConfigError, parse_config


def _data(**cheap: Any) -> dict[str, Any]:
    entry = {"name": "sim", "oracle": {"kind": "http", "base_url": "http://127.0.0.1:9"}, **cheap}
    return {"name": "c", "prior": {"name": "gmm-toy"},
            "oracle": {"kind": "http", "base_url": "http://127.0.0.1:8"},
            "objectives": [{"name": "y"}], "oracles": [entry]}


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(CampaignConfigError) as info:
        parse_config(data, "mf.toml")
    return str(info.value)


def test_defaults_and_objectives_filled_from_the_campaign() -> None:
    cfg = parse_config(_data(), "mf.toml")
    (sim,) = cfg.oracles
    assert (sim.name, sim.cost, sim.per_round, sim.budget, sim.wait_s) == ("sim", 1.0, 8, None, 600.0)
    assert tuple(sim.oracle.objectives) == ("y",)  # type: ignore[attr-defined]
    # the stored snapshot round-trips (resume rebuilds the same cheap oracles)
    again = CampaignConfig.model_validate(cfg.to_json_dict())
    assert again.oracles == cfg.oracles
    assert parse_config({**_data(), "oracles": []}, "x.toml").oracles == []


@pytest.mark.parametrize(("cheap", "field", "words"), [
    ({"name": "main"}, "oracles.0.name", '"main" names the campaign'),
    ({"name": "a b"}, "oracles.0.name", "letters, digits"),
    ({"cost": 0}, "oracles.0.cost", "greater than 0"),
    ({"cost": 2.0}, "oracles.0.cost", "less than or equal to 1"),
    ({"per_round": 0}, "oracles.0.per_round", "greater than or equal to 1"),
    ({"budget": 0}, "oracles.0.budget", "greater than or equal to 1"),
    ({"wait_s": -1}, "oracles.0.wait_s", "greater than 0"),
    ({"colour": "red"}, "oracles.0.colour", "unknown field"),
    ({"oracle": {"kind": "manual", "directory": "/tmp/x"}}, "oracles.0.oracle", "cannot be a cheap oracle"),
    ({"oracle": {"kind": "pull"}}, "oracles.0.oracle", "cannot be a cheap oracle"),
    ({"oracle": {"kind": "http", "base_url": "http://127.0.0.1:9", "objectives": ["z"]}},
     "oracles.0.oracle", "primary objective 'y'"),
])
def test_bad_entry_names_the_field(cheap: dict[str, Any], field: str, words: str) -> None:
    message = _error(_data(**cheap))
    assert field in message and words in message, message


def test_duplicate_names_async_pipeline_and_long_names_refused() -> None:
    data = _data()
    data["oracles"] = data["oracles"] * 2
    assert "`oracles.1.name`: 'sim' is used twice" in _error(data)
    assert 'pipeline.mode = "sync"' in _error({**_data(), "pipeline": {"mode": "async"}})
    long = {**_data(name="s" * 32), "name": "c" * 100}
    assert "over 128 characters" in _error(long)


def test_secret_in_a_cheap_command_env_refused() -> None:
    data = _data(oracle={"kind": "command", "argv": ["sim"], "env": {"LAB_TOKEN": "x"}})
    message = _error(data)
    assert "oracles.0.oracle.env.LAB_TOKEN" in message and "secret" in message


def test_relative_paths_of_a_cheap_oracle_resolve_against_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from optimizer.campaign.config_io import load_config

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.toml").write_text(
        'name = "c"\n[prior]\nname = "gmm-toy"\n[oracle]\nkind = "http"\nbase_url = "http://127.0.0.1:8"\n'
        '[[objectives]]\nname = "y"\n[[oracles]]\nname = "sim"\n[oracles.oracle]\nkind = "http"\n'
        'base_url = "http://127.0.0.1:9"\ntoken_file = "tok.txt"\n')
    cfg = load_config(tmp_path / "sub" / "c.toml")
    assert str(cfg.oracles[0].oracle.token_file) == str(tmp_path / "sub" / "tok.txt")  # type: ignore[attr-defined]


def test_preflight_checks_each_cheap_oracle(lab) -> None:  # type: ignore[no-untyped-def]
    from optimizer.campaign.service import preflight
    from optimizer.errors import PreflightError

    def cfg(cheap_oracle: dict[str, Any]) -> CampaignConfig:
        data = _data(oracle=cheap_oracle)
        data["oracle"] = {"kind": "http", "base_url": lab.url, "timeout_s": 5.0}
        data["workers"] = {"count": 1, "cpus_per_worker": 0.5}
        return parse_config(data, "mf.toml")

    preflight(cfg({"kind": "http", "base_url": lab.url}))  # the Bowl lab takes gmm-toy's 2-d designs
    with pytest.raises(PreflightError, match=r"field `oracles.0.oracle`: .*127.0.0.1:9"):
        preflight(cfg({"kind": "http", "base_url": "http://127.0.0.1:9", "timeout_s": 2.0}))
    with pytest.raises(PreflightError, match=r"field `oracles.0.oracle`: .*\(3,\)"):
        preflight(cfg({"kind": "botorch", "function": "ackley", "dim": 3, "objective": "y"}))


def test_readme_example_is_valid() -> None:
    import re
    import tomllib
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Cheap evaluators (`[[oracles]]`)", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    data = {**_data(), "oracles": tomllib.loads(block)["oracles"]}
    (sim,) = parse_config(data, "README.md").oracles
    assert (sim.name, sim.cost, sim.per_round, sim.budget) == ("sim", 0.05, 16, 400)


def test_cheap_oracle_reports_what_the_multitask_gps_model() -> None:
    """With [[constraints]] or a Pareto campaign, each cheap oracle reports the constraint
    outputs / every objective (one multi-task GP each): checked at config time, naming the field."""
    con = {**_data(), "constraints": [{"name": "tox", "op": "<=", "bound": 0.2}]}
    cfg = parse_config(con, "mf.toml")
    assert tuple(cfg.oracles[0].oracle.objectives) == ("y", "tox")  # type: ignore[attr-defined]
    con["oracles"] = [{**con["oracles"][0], "oracle": {
        "kind": "http", "base_url": "http://127.0.0.1:9", "objectives": ["y"]}}]
    message = _error(con)
    assert "field `oracles.0.oracle`" in message and "['tox']" in message, message
    pareto = {**_data(), "objectives": [{"name": "y"}, {"name": "z", "direction": "minimize"}],
              "surrogate": {"scalarization": "parego"}}
    pareto["oracle"] = {**pareto["oracle"], "objectives": ["y", "z"]}
    assert parse_config(pareto, "mf.toml").oracles[0].name == "sim"
    pareto["oracles"] = [{**pareto["oracles"][0], "oracle": {
        "kind": "http", "base_url": "http://127.0.0.1:9", "objectives": ["y"]}}]
    message = _error(pareto)
    assert "field `oracles.0.oracle`" in message and "['z']" in message, message
