"""The Dockerfiles, read statically (no Docker daemon here): multi-stage, a non-root final user,
a health check on serve's /healthz, EXPOSE of serve's default port, ENTRYPOINT tiltloop, torch
(pyproject's range, which 2.13.0 satisfies) installed before the project, the bundled priors
checked into the image; the checker catches each broken variant."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from deploy_files import (
    DOCKERFILES,
    REPO,
    build_args,
    dockerfile_problems,
    parse_dockerfile,
    parse_ray_start_args,
    project_requirement,
    serve_defaults,
)
from packaging.requirements import Requirement
from packaging.version import Version

CPU, CUDA = DOCKERFILES
NODE_SCRIPT = REPO / "infra" / "docker" / "ray-node-then"


@pytest.fixture(scope="module")
def port() -> int:
    return int(serve_defaults()["port"])


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_has_no_problem(path: Path, port: int) -> None:
    assert dockerfile_problems(path.read_text(), port=port) == []


@pytest.mark.parametrize("old, new, problem", [
    ("USER 10001:10001", "USER root", "runs as 'root'"),
    ("USER 10001:10001", "", "sets no USER"),
    ("HEALTHCHECK", "# HEALTHCHECK", "no HEALTHCHECK"),
    ("127.0.0.1:8080/healthz", "127.0.0.1:8080/health", "does not request"),
    ("EXPOSE 8080", "EXPOSE 8000", "differs from the serve port"),
    ('ENTRYPOINT ["tiltloop"]', 'ENTRYPOINT ["python"]', "ENTRYPOINT"),
    ("FROM ${PYTHON_IMAGE} AS runtime", "", "multi-stage"),
    ("COPY --from=builder /opt/venv /opt/venv", "", "copies nothing"),
])
def test_the_checker_catches_a_broken_dockerfile(port: int, old: str, new: str, problem: str) -> None:
    text = CPU.read_text()
    assert old in text
    problems = dockerfile_problems(text.replace(old, new), port=port)
    assert any(problem in p for p in problems), problems


def test_the_checker_catches_torch_installed_after_the_project(port: int) -> None:
    text = CPU.read_text()
    torch_line = next(line for line in text.splitlines() if "${TORCH_SPEC}" in line and "RUN" in line)
    moved = text.replace(torch_line + "\n", "").replace(
        "FROM ${PYTHON_IMAGE} AS runtime", torch_line + "\n\nFROM ${PYTHON_IMAGE} AS runtime")
    assert any("before the project" in p for p in dockerfile_problems(moved, port=port))


def test_continuation_lines_are_joined() -> None:
    (ins,) = parse_dockerfile("RUN a \\\n  # a comment\n  && b\n")
    assert ins.keyword == "RUN" and ins.args == "a && b" and ins.line == 1


def test_torch_is_pyprojects_range_and_2_13_satisfies_it() -> None:
    wanted = Requirement(project_requirement("torch"))
    for path in DOCKERFILES:
        spec = Requirement(build_args(parse_dockerfile(path.read_text()))["TORCH_SPEC"])
        assert spec.name == "torch" and spec.specifier == wanted.specifier, path.name
        assert spec.specifier.contains("2.13.0") and spec.specifier.contains("2.13.0+cpu")


def test_cpu_image_takes_the_cpu_wheel_and_cuda_image_a_cuda_one() -> None:
    cpu = build_args(parse_dockerfile(CPU.read_text()))
    cuda = build_args(parse_dockerfile(CUDA.read_text()))
    assert cpu["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert "/cpu" not in cuda["TORCH_INDEX_URL"]
    assert "NVIDIA_VISIBLE_DEVICES=all" in CUDA.read_text()


def test_both_images_share_python_and_ray() -> None:
    """Every node of one Ray cluster must run the same Ray and Python."""
    cpu = build_args(parse_dockerfile(CPU.read_text()))
    cuda = build_args(parse_dockerfile(CUDA.read_text()))
    for name in ("PYTHON_IMAGE", "RAY_VERSION", "TORCH_SPEC"):
        assert cpu[name] == cuda[name], name
    ray = Requirement(project_requirement("ray"))
    assert Version(cpu["RAY_VERSION"]) in ray.specifier


def test_the_image_checks_every_bundled_prior() -> None:
    bundled = sorted(p.name for p in (REPO / "optimizer" / "priors" / "bundled").iterdir() if p.is_dir())
    for path in DOCKERFILES:
        check = next(i.args for i in parse_dockerfile(path.read_text())
                     if i.keyword == "RUN" and "bundled" in i.args)
        named = re.search(r"for n in \(([^)]*)\)", check)
        assert named, check
        assert sorted(n.strip(" '\"") for n in named.group(1).split(",") if n.strip()) == bundled


def test_copied_sources_exist_and_are_not_docker_ignored() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", ".git"} <= ignored
    for path in DOCKERFILES:
        for ins in parse_dockerfile(path.read_text()):
            if ins.keyword != "COPY" or "--from=" in ins.args:
                continue
            sources = [a for a in ins.args.split() if not a.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), f"{path.name} line {ins.line}: no {source}"
                assert source.split("/")[0] not in ignored, f"{source} is in .dockerignore"


def test_the_ray_node_script_joins_without_cpus_and_refuses_no_address() -> None:
    subprocess.run(["sh", "-n", str(NODE_SCRIPT)], check=True, timeout=30)
    start = re.search(r"ray start (.*); do", NODE_SCRIPT.read_text())
    assert start
    argv = [a.replace('"$RAY_ADDRESS"', "ray-head:6379") for a in start.group(1).split()]
    args = parse_ray_start_args(argv)
    assert args["num_cpus"] == 0 and args["num_gpus"] == 0
    done = subprocess.run(["sh", str(NODE_SCRIPT), "true"], capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode != 0 and "RAY_ADDRESS must name the Ray head" in done.stderr
