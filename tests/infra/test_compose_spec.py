"""infra/compose/docker-compose.yml validates against the Compose specification as
check-jsonschema ships it (a typo'd key fails), and each service's command parses with the real
parser of what it runs: `tiltloop`, `ray start`, `python -m oracles.labsim`."""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from deploy_files import (
    argv_of,
    compose_problems,
    load_compose,
    parse_labsim_args,
    parse_ray_start_args,
    parse_tiltloop_args,
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def test_the_compose_file_follows_the_specification(compose: dict[str, Any]) -> None:
    assert compose_problems(compose) == []
    assert set(compose["services"]) == {"postgres", "migrate", "ray-head", "ray-worker", "serve",
                                        "labsim"}


@pytest.mark.parametrize("service, typo", [("serve", "depend_on"), ("postgres", "helthcheck"),
                                           ("ray-worker", "replicas")])
def test_a_typod_key_fails(compose: dict[str, Any], service: str, typo: str) -> None:
    broken = copy.deepcopy(compose)
    broken["services"][service][typo] = {}
    problems = compose_problems(broken)
    assert any(typo in p and p.startswith(f"services/{service}") for p in problems), problems


def test_a_wrong_type_fails(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["serve"]["depends_on"] = "migrate"  # a list or a mapping
    assert any(p.startswith("services/serve/depends_on") for p in compose_problems(broken))


def test_postgres_keeps_its_data_and_reports_health(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]
    assert "pgdata:/var/lib/postgresql/data" in pg["volumes"]
    assert "pgdata" in compose["volumes"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])


def test_migrate_runs_db_upgrade_once_postgres_is_healthy(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    args = parse_tiltloop_args(argv_of(migrate))
    assert (args["command"], args["db_command"], args["revision"]) == ("db", "upgrade", "head")
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"


def test_ray_head_and_scalable_workers(compose: dict[str, Any]) -> None:
    head, worker = compose["services"]["ray-head"], compose["services"]["ray-worker"]
    assert head["entrypoint"] == worker["entrypoint"] == ["ray"]
    assert argv_of(head)[0] == argv_of(worker)[0] == "start"
    head_args = parse_ray_start_args(argv_of(head)[1:])
    assert head_args["head"] and head_args["num_cpus"] == 0 and head_args["num_gpus"] == 0
    worker_args = parse_ray_start_args(argv_of(worker)[1:])
    assert worker_args["address"] == f"ray-head:{head_args['port']}"
    assert json.loads(worker_args["resources"]) == {"tiltloop_worker": 1}
    # `--scale ray-worker=N` needs no fixed name and no fixed host port
    assert "container_name" not in worker and "ports" not in worker
    assert worker["deploy"]["replicas"] >= 1


def test_serve_runs_two_replicas_after_the_migration(compose: dict[str, Any]) -> None:
    serve = compose["services"]["serve"]
    assert serve["deploy"]["replicas"] == 2
    assert serve["entrypoint"] == ["ray-node-then", "tiltloop"]
    args = parse_tiltloop_args(argv_of(serve))
    assert args["command"] == "serve" and args["host"] == "0.0.0.0"
    assert serve["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # one host port per replica: "127.0.0.1:8080-8081:8080"
    (published,) = serve["ports"]
    first, last = (int(p) for p in published.split(":")[1].split("-"))
    assert last - first + 1 >= serve["deploy"]["replicas"]


def test_labsim_serves_a_bundled_priors_function(compose: dict[str, Any]) -> None:
    labsim = compose["services"]["labsim"]
    assert labsim["entrypoint"] == ["python", "-m", "oracles.labsim"]
    args = parse_labsim_args(argv_of(labsim))
    assert args["function"] == "manifold" and args["host"] == "0.0.0.0"
    assert args["token_env"] in labsim["environment"]


def test_a_bad_flag_in_a_command_fails(compose: dict[str, Any]) -> None:
    with pytest.raises(SystemExit):
        parse_tiltloop_args(argv_of(compose["services"]["serve"]) + ["--replicas", "2"])
    from click.exceptions import NoSuchOption

    with pytest.raises(NoSuchOption):
        parse_ray_start_args(argv_of(compose["services"]["ray-head"])[1:] + ["--num-cpu=2"])
