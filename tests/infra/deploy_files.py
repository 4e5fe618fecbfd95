"""The deploy files under ``infra/``, read for the tests: the kustomization rendered by kubectl,
the compose file, the Dockerfiles parsed into instructions, and the facts of the code they must
agree with (``tiltloop serve``'s defaults, the environment variables the code reads).

The checks that more than one test file runs (on the real files and on broken copies) live here
and return lists of problems, so a negative test can show each one catches its mistake.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
K8S_DIR = INFRA / "k8s"
COMPOSE_FILE = INFRA / "compose" / "docker-compose.yml"
DOCKERFILES = (INFRA / "docker" / "Dockerfile", INFRA / "docker" / "Dockerfile.cuda")
RAYCLUSTER_SCHEMA = INFRA / "schemas" / "raycluster.schema.json"
#: The Kubernetes version the manifests target (kubectl on these machines is v1.32).
K8S_VERSION = "1.32.0"
#: Image names (tags are the project's version) per Dockerfile.
IMAGE_OF = {"Dockerfile": "tiltloop", "Dockerfile.cuda": "tiltloop-cuda"}
_CODE_PACKAGES = ("optimizer", "oracles", "storage", "tiltloop")


# ---------------------------------------------------------------- the code's own facts

def project_version() -> str:
    """``[project] version`` of pyproject.toml."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def project_requirement(name: str) -> str:
    """The requirement string of dependency ``name`` in pyproject.toml (e.g. ``torch>=2.4,<3``)."""
    for req in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        if re.match(rf"^{re.escape(name)}(\[|[<>=!~ ]|$)", req):
            return req
    raise AssertionError(f"pyproject.toml: no dependency named {name}")


def serve_defaults() -> dict[str, Any]:
    """``tiltloop serve``'s argparse defaults (host, port, ...), from the real parser."""
    from optimizer.cli import build_parser

    return vars(build_parser().parse_args(["serve"]))


def parse_tiltloop_args(argv: list[str]) -> dict[str, Any]:
    """``argv`` parsed by the real ``tiltloop`` parser (SystemExit on a bad flag)."""
    from optimizer.cli import build_parser

    return vars(build_parser().parse_args(argv))


def parse_labsim_args(argv: list[str]) -> dict[str, Any]:
    """``argv`` parsed by the lab simulator's real parser (``python -m oracles.labsim``)."""
    from oracles.labsim.__main__ import build_parser

    return vars(build_parser().parse_args(argv))


def parse_ray_start_args(argv: list[str]) -> dict[str, Any]:
    """``argv`` (after ``ray start``) parsed by Ray's own click command, which is not run."""
    from ray.scripts.scripts import start

    return dict(start.make_context("start", list(argv)).params)


def ray_start_options() -> set[str]:
    """Every long option of ``ray start`` without its dashes (``num-cpus``, ``resources``, ...)."""
    from ray.scripts.scripts import start

    return {opt[2:] for param in start.params for opt in param.opts if opt.startswith("--")}


_ENV_READ = re.compile(r"""os\.environ(?:\.get\(|\.setdefault\(|\[)\s*["']([A-Z][A-Z0-9_]*)["']""")
_ENV_CONST = re.compile(r"""^[A-Z_]*ENV[A-Z_]*\s*(?::\s*\w+\s*)?=\s*["']([A-Z][A-Z0-9_]*)["']""", re.M)


def code_env_vars() -> set[str]:
    """Names of the environment variables the code reads: ``os.environ[...]`` / ``.get(...)``
    with a literal, and module constants such as ``URL_ENV = "TILTLOOP_DATABASE_URL"``."""
    names: set[str] = set()
    for package in _CODE_PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text()
            names |= set(_ENV_READ.findall(text)) | set(_ENV_CONST.findall(text))
    return names


# ---------------------------------------------------------------- kubectl kustomize

def kubectl() -> str:
    """The kubectl binary; skips without one, except under CI (env ``CI``), where it fails."""
    path = shutil.which("kubectl")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is not installed, and CI must render infra/k8s with it")
        pytest.skip("kubectl is not installed")
    return path


def kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    """``kubectl kustomize DIRECTORY`` (no cluster, no network)."""
    return subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True,
                          text=True, timeout=120, check=False)


def render_k8s(directory: Path = K8S_DIR) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` renders from ``directory``."""
    done = kustomize(directory)
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_templates(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(where, PodTemplateSpec)`` of a Deployment, Job or RayCluster."""
    spec = obj.get("spec", {})
    if obj["kind"] == "RayCluster":
        out = [("headGroupSpec", spec["headGroupSpec"]["template"])]
        out += [(f"workerGroupSpecs[{g['groupName']}]", g["template"])
                for g in spec.get("workerGroupSpecs", [])]
        return out
    return [("template", spec["template"])] if "template" in spec else []


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for _, t in pod_templates(obj) for c in t["spec"]["containers"]]


# ---------------------------------------------------------------- compose

def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file with its YAML anchors and merge keys resolved."""
    return yaml.safe_load(path.read_text())


def compose_schema() -> dict[str, Any]:
    """The Compose specification's JSON schema as check-jsonschema ships it."""
    from check_jsonschema.builtin_schemas import get_builtin_schema

    return get_builtin_schema("vendor.compose-spec")


def compose_problems(doc: dict[str, Any]) -> list[str]:
    """Every Compose-specification violation in ``doc``, as ``path: message``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(compose_schema())
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(doc)]


def argv_of(service: dict[str, Any]) -> list[str]:
    """A compose service's command as a list (a string command is split like a shell would)."""
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


# ---------------------------------------------------------------- Dockerfiles

@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: ``keyword`` upper-cased, ``args`` with continuations joined."""

    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form of the arguments, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: comments and blank lines dropped, ``\\`` continuations joined
    (comment lines inside a continuation are skipped, as Docker does)."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        joined = " ".join(part.strip() for part in pending)
        pending = []
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the Dockerfile ends inside a line continuation"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The build stages: each list starts with its FROM (global ARGs before the first are left
    out)."""
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([ins])
        elif out:
            out[-1].append(ins)
    return out


def build_args(instructions: list[Instruction]) -> dict[str, str]:
    """``ARG NAME=default`` values (the first default of each name)."""
    out: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ARG" and "=" in ins.args:
            name, _, value = ins.args.partition("=")
            out.setdefault(name.strip(), value.strip().strip('"'))
    return out


def dockerfile_problems(text: str, *, port: int) -> list[str]:
    """What is wrong with a tiltloop Dockerfile: multi-stage, a non-root final user, a health
    check on ``/healthz`` at ``port``, ``EXPOSE port``, ``ENTRYPOINT ["tiltloop"]``, torch
    installed before the project."""
    problems: list[str] = []
    instructions = parse_dockerfile(text)
    built = stages(instructions)
    if len(built) < 2:
        problems.append(f"expected a multi-stage build, found {len(built)} stage(s)")
        return problems
    final = built[-1]
    if not any(i.keyword == "COPY" and "--from=" in i.args for i in final):
        problems.append("the final stage copies nothing from an earlier stage (COPY --from=...)")
    users = [i for i in final if i.keyword == "USER"]
    if not users:
        problems.append("the final stage sets no USER: the container would run as root")
    else:
        user = users[-1].args.split(":")[0].strip()
        if user in ("root", "0"):
            problems.append(f"the final stage runs as {user!r} (line {users[-1].line})")
    checks = [i for i in final if i.keyword == "HEALTHCHECK"]
    if not checks:
        problems.append("no HEALTHCHECK in the final stage")
    elif f"127.0.0.1:{port}/healthz" not in checks[-1].args:
        problems.append(f"the HEALTHCHECK does not request http://127.0.0.1:{port}/healthz")
    exposed = {p.split("/")[0] for i in final if i.keyword == "EXPOSE" for p in i.args.split()}
    if exposed != {str(port)}:
        problems.append(f"EXPOSE {sorted(exposed)} differs from the serve port {port}")
    entry = [i for i in final if i.keyword == "ENTRYPOINT"]
    if not entry or entry[-1].exec_form() != ["tiltloop"]:
        problems.append('ENTRYPOINT is not ["tiltloop"]')
    runs = [i for i in built[0] if i.keyword == "RUN"]
    torch_at = next((n for n, i in enumerate(runs) if "TORCH_SPEC" in i.args), None)
    project_at = next((n for n, i in enumerate(runs) if re.search(r"pip install (\S+ )*\.( |$)", i.args)),
                      None)
    if torch_at is None or project_at is None or torch_at > project_at:
        problems.append("the builder must install torch (TORCH_SPEC) before the project (pip install .)")
    return problems
