"""The rendered KubeRay RayCluster validates against our schema of the fields we use
(infra/schemas/raycluster.schema.json, closed objects); a typo'd field or a non-string
rayStartParams value fails. Its rayStartParams are real `ray start` options, the head advertises
no CPUs or GPUs, every worker group advertises `tiltloop_worker`, and the GPU group asks for
`nvidia.com/gpu`."""
from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from deploy_files import RAYCLUSTER_SCHEMA, one, parse_ray_start_args, ray_start_options


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(RAYCLUSTER_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_raycluster_validates(rendered: list[dict[str, Any]]) -> None:
    validator().validate(one(rendered, "RayCluster"))


@pytest.mark.parametrize("path, typo", [
    (("spec",), "workerGroupSpec"),  # for workerGroupSpecs
    (("spec", "headGroupSpec"), "rayStartParam"),
    (("spec", "workerGroupSpecs", 0), "maxReplica"),
    (("spec", "workerGroupSpecs", 1, "template"), "specs"),
])
def test_a_typod_field_fails(rendered: list[dict[str, Any]], path: tuple[Any, ...], typo: str) -> None:
    broken = copy.deepcopy(one(rendered, "RayCluster"))
    node = broken
    for key in path:
        node = node[key]
    node[typo] = {}
    errors = list(validator().iter_errors(broken))
    assert any(typo in e.message and "Additional properties" in e.message for e in errors), errors


def test_a_number_in_ray_start_params_fails(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(one(rendered, "RayCluster"))
    broken["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # KubeRay takes strings
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'string'"):
        validator().validate(broken)


def test_unquoted_custom_resources_fail(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(one(rendered, "RayCluster"))
    broken["spec"]["workerGroupSpecs"][0]["rayStartParams"]["resources"] = '{"tiltloop_worker": 1}'
    with pytest.raises(jsonschema.ValidationError, match="does not match"):
        validator().validate(broken)


def _groups(ray: dict[str, Any]) -> list[dict[str, Any]]:
    return [ray["spec"]["headGroupSpec"], *ray["spec"]["workerGroupSpecs"]]


def test_ray_start_params_are_ray_start_options(rendered: list[dict[str, Any]]) -> None:
    options = ray_start_options()
    for group in _groups(one(rendered, "RayCluster")):
        params = group["rayStartParams"]
        assert set(params) <= options, set(params) - options
        # KubeRay passes them as --key=value: Ray's own parser takes them (resources unquoted once)
        argv = [f"--{k}={json.loads(v) if k == 'resources' else v}" for k, v in params.items()]
        parse_ray_start_args(argv)


def test_workers_land_on_worker_nodes_only(rendered: list[dict[str, Any]]) -> None:
    ray = one(rendered, "RayCluster")
    head = ray["spec"]["headGroupSpec"]["rayStartParams"]
    assert head["num-cpus"] == "0" and head["num-gpus"] == "0"
    groups = {g["groupName"]: g for g in ray["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for group in groups.values():
        resources = json.loads(json.loads(group["rayStartParams"]["resources"]))
        assert resources == {"tiltloop_worker": 1}
    (gpu,) = groups["gpu"]["template"]["spec"]["containers"]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["image"].startswith("tiltloop-cuda:")
    (cpu,) = groups["cpu"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
    # Ray schedules by what a pod may use: requests equal limits on worker pods
    for container in (cpu, gpu):
        assert container["resources"]["requests"] == container["resources"]["limits"]
