"""Fixtures of the deploy-file tests: the kustomization rendered once per session."""
from __future__ import annotations

from typing import Any

import pytest
from deploy_files import render_k8s


@pytest.fixture(scope="session")
def rendered() -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize infra/k8s`` renders."""
    return render_k8s()
