"""``kubectl kustomize infra/k8s`` renders, with every object the deployment needs, all in the
tiltloop namespace; a kustomization naming a missing file fails to render."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from deploy_files import K8S_DIR, by_kind, kustomize, one, pod_templates

EXPECTED = {("Namespace", "tiltloop"), ("Secret", "tiltloop"), ("ConfigMap", "tiltloop"),
            ("RayCluster", "tiltloop-ray"), ("Job", "tiltloop-db-upgrade"),
            ("Deployment", "tiltloop-serve"), ("Service", "tiltloop"),
            ("PodDisruptionBudget", "tiltloop-serve")}


def test_renders_every_object_in_the_namespace(rendered: list[dict[str, Any]]) -> None:
    assert {(o["kind"], o["metadata"]["name"]) for o in rendered} == EXPECTED
    for obj in rendered:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "tiltloop", obj["metadata"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tiltloop"


def test_serve_runs_two_replicas_non_root_with_probes_and_limits(rendered: list[dict[str, Any]]) -> None:
    deployment = one(rendered, "Deployment", "tiltloop-serve")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (serve,) = pod["containers"]
    assert serve["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert serve["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert serve["securityContext"]["allowPrivilegeEscalation"] is False
    for key in ("cpu", "memory"):
        assert serve["resources"]["requests"][key] and serve["resources"]["limits"][key]


def test_every_container_has_requests_limits_and_no_root(rendered: list[dict[str, Any]]) -> None:
    for obj in rendered:
        for where, template in pod_templates(obj):
            spec = template["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True, (obj["kind"], where)
            for c in spec["containers"]:
                assert set(c["resources"]) == {"requests", "limits"}, (obj["kind"], where, c["name"])
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_pdb_selects_the_serve_pods(rendered: list[dict[str, Any]]) -> None:
    pdb = one(rendered, "PodDisruptionBudget")
    labels = one(rendered, "Deployment", "tiltloop-serve")["spec"]["template"]["metadata"]["labels"]
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert 0 < pdb["spec"]["minAvailable"] < one(rendered, "Deployment")["spec"]["replicas"]
    service = one(rendered, "Service")
    assert service["spec"]["selector"].items() <= labels.items()


def test_secret_values_are_marked_placeholders(rendered: list[dict[str, Any]]) -> None:
    (secret,) = by_kind(rendered, "Secret")
    assert secret["stringData"], "the Secret has no stringData"
    for key, value in secret["stringData"].items():
        assert "CHANGE-ME" in value, f"Secret key {key} holds a value that is not a placeholder"


def test_a_kustomization_naming_a_missing_file_fails(tmp_path: Path) -> None:
    broken = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, broken)
    text = (broken / "kustomization.yaml").read_text()
    (broken / "kustomization.yaml").write_text(
        text.replace("  - serve-pdb.yaml\n", "  - serve-pdb.yaml\n  - no-such-file.yaml\n"))
    done = kustomize(broken)
    assert done.returncode != 0
    assert "no-such-file.yaml" in done.stderr
