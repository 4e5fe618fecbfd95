"""Every rendered core Kubernetes object, and every pod template inside the RayCluster, validates
strictly (unknown fields are errors) against the Kubernetes schemas that kubernetes-validate
ships; a misspelled or mistyped field fails."""
from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
from deploy_files import K8S_VERSION, one, pod_templates

CORE = ("Namespace", "Secret", "ConfigMap", "Job", "Deployment", "Service", "PodDisruptionBudget")


def validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_every_core_object_validates(rendered: list[dict[str, Any]]) -> None:
    core = [o for o in rendered if o["apiVersion"] != "ray.io/v1"]
    assert sorted(o["kind"] for o in core) == sorted(CORE)
    for obj in core:
        validate(obj)


def test_raycluster_pod_templates_validate_as_pod_templates(rendered: list[dict[str, Any]]) -> None:
    ray = one(rendered, "RayCluster")
    templates = pod_templates(ray)
    assert len(templates) == 3  # head, cpu and gpu workers
    for where, template in templates:
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate",
                   "metadata": {"name": where.replace("[", "-").replace("]", "").lower()},
                   "template": template}
        validate(wrapped)


def test_a_misspelled_deployment_field_fails(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(one(rendered, "Deployment"))
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        validate(broken)


def test_a_misspelled_probe_field_inside_the_pod_fails(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(one(rendered, "Deployment"))
    probe = broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError, match="paht"):
        validate(broken)


def test_a_mistyped_value_fails(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(one(rendered, "Service"))
    broken["spec"]["ports"][0]["port"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)
