"""The compose file, the Kubernetes manifests, the Dockerfiles and the code agree: serve's port
(argparse default = EXPOSE = compose = Deployment = Service), the image names and tags (the
project's version), the environment variables (each one the code reads, or a lab token a
config names by token_env), the Ray head address, the Ray version; the probe and health-check
paths are routes of the real app, which answer without a token."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from deploy_files import (
    COMPOSE_FILE,
    DOCKERFILES,
    IMAGE_OF,
    argv_of,
    build_args,
    code_env_vars,
    containers,
    load_compose,
    one,
    parse_dockerfile,
    parse_labsim_args,
    parse_ray_start_args,
    parse_tiltloop_args,
    project_version,
    serve_defaults,
)

#: compose services that run the tiltloop image (Postgres does not)
TILTLOOP_SERVICES = ("migrate", "ray-head", "ray-worker", "serve", "labsim")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def token_envs(compose: dict[str, Any]) -> set[str]:
    """Variables that hold a lab's token: the stand-in lab's --token-env, which a campaign's
    [oracle] token_env names."""
    return {parse_labsim_args(argv_of(compose["services"]["labsim"]))["token_env"]}


def env_problems(compose: dict[str, Any], rendered: list[dict[str, Any]]) -> list[str]:
    """Environment variables set for tiltloop containers that nothing reads."""
    known = code_env_vars() | token_envs(compose)
    problems = []
    for name in TILTLOOP_SERVICES:
        for var in compose["services"][name].get("environment", {}):
            if var not in known:
                problems.append(f"compose service {name}: {var} is read by no code")
    for obj in rendered:
        names: list[str] = []
        if obj["kind"] in ("Secret", "ConfigMap"):
            names = list(obj.get("stringData", obj.get("data", {})))
        for c in containers(obj):
            names += [e["name"] for e in c.get("env", [])]
        problems += [f"{obj['kind']} {obj['metadata']['name']}: {var} is read by no code"
                     for var in names if var not in known]
    return problems


def port_problems(compose: dict[str, Any], rendered: list[dict[str, Any]], default: int) -> list[str]:
    """Places where serve's port differs from its argparse default."""
    problems = []
    serve = compose["services"]["serve"]
    if parse_tiltloop_args(argv_of(serve))["port"] != default:
        problems.append("compose serve: --port")
    if any(int(p.rsplit(":", 1)[1]) != default for p in serve["ports"]):
        problems.append("compose serve: ports")
    deployment = one(rendered, "Deployment", "tiltloop-serve")
    (c,) = containers(deployment)
    if parse_tiltloop_args(c["args"])["port"] != default:
        problems.append("Deployment: --port")
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    if named.get("http") != default:
        problems.append("Deployment: containerPort http")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if named.get(c[probe]["httpGet"]["port"], c[probe]["httpGet"]["port"]) != default:
            problems.append(f"Deployment: {probe} port")
    for port in one(rendered, "Service")["spec"]["ports"]:
        if named.get(port["targetPort"], port["targetPort"]) != default:
            problems.append("Service: targetPort")
    return problems


def route_paths(app: Any) -> set[str]:
    """Every path the app serves (FastAPI >= 0.16x keeps included routers as lazy entries of
    ``app.routes``, which ``iter_route_contexts`` resolves)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # an older FastAPI copies included routes into app.routes
        return {r.path for r in app.routes}
    return {r.path for r in iter_route_contexts(app.routes)}


def test_serve_port_agrees_everywhere(compose: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    default = serve_defaults()["port"]
    assert port_problems(compose, rendered, default) == []
    for path in DOCKERFILES:
        exposed = [i.args for i in parse_dockerfile(path.read_text()) if i.keyword == "EXPOSE"]
        assert exposed == [str(default)], path.name


def test_a_port_that_differs_is_caught(compose: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    default = serve_defaults()["port"]
    broken = copy.deepcopy(rendered)
    one(broken, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 9090
    # the probes and the Service name the port, so they move with it: all are reported
    assert port_problems(compose, broken, default) == [
        "Deployment: containerPort http", "Deployment: startupProbe port",
        "Deployment: livenessProbe port", "Deployment: readinessProbe port", "Service: targetPort"]
    other = copy.deepcopy(compose)
    other["services"]["serve"]["ports"] = ["127.0.0.1:8080-8081:9090"]
    assert port_problems(other, rendered, default) == ["compose serve: ports"]


def test_images_are_the_projects_version(compose: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    version = project_version()
    images = {f"{name}:{version}" for name in IMAGE_OF.values()}
    for name in TILTLOOP_SERVICES:
        service = compose["services"][name]
        assert service["image"] == f"tiltloop:{version}", name
        assert service["build"]["dockerfile"] == "infra/docker/Dockerfile"
        assert (COMPOSE_FILE.parent / service["build"]["context"]).resolve() == COMPOSE_FILE.parents[2]
    used = {c["image"] for obj in rendered for c in containers(obj)}
    assert used == images
    for path in DOCKERFILES:  # the build command in each Dockerfile's header tags the same image
        assert f"-f infra/docker/{path.name} -t {IMAGE_OF[path.name]}:{version} ." in path.read_text()


def test_every_env_var_is_read_by_the_code(compose: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    read = code_env_vars()
    assert {"TILTLOOP_DATABASE_URL", "RAY_ADDRESS"} <= read  # the scanner sees what it must
    assert env_problems(compose, rendered) == []
    # the database URL reaches the migration and every serve replica, in both deployments
    for name in ("migrate", "serve"):
        assert "TILTLOOP_DATABASE_URL" in compose["services"][name]["environment"]
    for obj in (one(rendered, "Job"), one(rendered, "Deployment")):
        (c,) = containers(obj)
        assert "TILTLOOP_DATABASE_URL" in {e["name"] for e in c["env"]}


def test_an_env_var_nothing_reads_is_caught(compose: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["serve"]["environment"]["TILTLOOP_DB_URL"] = "x"
    assert env_problems(broken, rendered) == ["compose service serve: TILTLOOP_DB_URL is read by no code"]


def test_lab_token_is_an_http_oracle_token_env() -> None:
    from oracles.factory import HttpOracleConfig

    assert "token_env" in HttpOracleConfig.model_fields


def test_database_urls_parse(compose: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    from storage.engine import parse_url

    url = compose["services"]["serve"]["environment"]["TILTLOOP_DATABASE_URL"]
    filled = re.sub(r"\$\{POSTGRES_PASSWORD[^}]*\}", "secret", url)
    parsed = parse_url(filled)
    pg = compose["services"]["postgres"]["environment"]
    assert (parsed.host, parsed.username, parsed.database) == ("postgres", pg["POSTGRES_USER"],
                                                              pg["POSTGRES_DB"])
    parse_url(one(rendered, "Secret")["stringData"]["TILTLOOP_DATABASE_URL"])


def test_serve_joins_the_ray_head(compose: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    head = parse_ray_start_args(argv_of(compose["services"]["ray-head"])[1:])
    assert compose["services"]["serve"]["environment"]["RAY_ADDRESS"] == f"ray-head:{head['port']}"
    ray = one(rendered, "RayCluster")
    (head_container,) = ray["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    gcs = {p["name"]: p["containerPort"] for p in head_container["ports"]}["gcs"]
    assert "port" not in ray["spec"]["headGroupSpec"]["rayStartParams"]  # KubeRay's default: 6379
    assert gcs == 6379
    address = one(rendered, "ConfigMap")["data"]["RAY_ADDRESS"]
    assert address == f"{ray['metadata']['name']}-head-svc:{gcs}"
    (serve,) = containers(one(rendered, "Deployment"))
    assert {"name": "RAY_ADDRESS", "valueFrom": {"configMapKeyRef": {"name": "tiltloop",
                                                                     "key": "RAY_ADDRESS"}}} in serve["env"]


def test_ray_version_matches_the_images(rendered: list[dict[str, Any]]) -> None:
    for path in DOCKERFILES:
        assert build_args(parse_dockerfile(path.read_text()))["RAY_VERSION"] == \
            one(rendered, "RayCluster")["spec"]["rayVersion"]


def test_probe_paths_are_routes_of_the_app_and_need_no_token(rendered: list[dict[str, Any]],
                                                              tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from optimizer.campaign.service import open_storage
    from optimizer.service.app import create_app

    (serve,) = containers(one(rendered, "Deployment"))
    paths = {serve[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")}
    for path in DOCKERFILES:  # the image's HEALTHCHECK
        check = next(i.args for i in parse_dockerfile(path.read_text()) if i.keyword == "HEALTHCHECK")
        paths |= set(re.findall(r"http://127\.0\.0\.1:\d+(/\w+)", check))
    assert paths == {"/healthz", "/readyz"}
    storage = open_storage(f"sqlite:///{tmp_path / 'probe.db'}", create=True)
    try:
        app = create_app(storage, replica="probe-test")
        assert paths <= route_paths(app)
        with TestClient(app) as client:
            for path in sorted(paths):
                assert client.get(path).status_code == 200, path
            assert client.get("/v1/campaigns").status_code == 401  # the rest needs a token
    finally:
        storage.close()


def test_the_readmes_compose_campaign_reaches_the_stand_in_lab(compose: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """infra/README.md's campaign for the compose stand-in lab is a valid config whose oracle is
    built as is, at the labsim service's port, with its objective and the serve replicas' token."""
    import json
    import sys

    from deploy_files import INFRA

    from optimizer.campaign.config_io import parse_config
    from oracles.factory import build_oracle

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    text = (INFRA / "README.md").read_text()
    body = re.search(r"-d @- <<'EOF'\n(.*?)\nEOF\n", text, re.S)
    assert body, "infra/README.md: no campaign request body"
    config = parse_config(tomllib.loads(json.loads(body.group(1))["toml"]), "infra/README.md")
    labsim = parse_labsim_args(argv_of(compose["services"]["labsim"]))
    assert config.oracle.base_url == f"http://labsim:{labsim['port']}"
    assert config.prior.name == labsim["function"] == "manifold"
    assert [o.name for o in config.objectives] == ["value"]  # what labsim's manifold reports
    assert config.oracle.token_env == labsim["token_env"]
    assert config.oracle.token_env in compose["services"]["serve"]["environment"]
    monkeypatch.setenv(config.oracle.token_env, "a-lab-token")  # as the serve replicas have it
    oracle = build_oracle(config.oracle.kind,  # refuses plain http to a non-loopback host otherwise
                          config.oracle.model_dump(exclude={"kind"}), safe=False)
    oracle.close()
