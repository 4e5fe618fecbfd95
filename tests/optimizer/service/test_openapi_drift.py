"""The committed OpenAPI document (docs/service-openapi.json) equals the app's own."""
from __future__ import annotations

from pathlib import Path

from optimizer.service.openapi import DOCUMENT, document, render

ROOT = Path(__file__).resolve().parents[3]


def test_the_committed_openapi_document_equals_the_apps() -> None:
    committed = (ROOT / DOCUMENT).read_text(encoding="utf-8")
    assert committed == render(document()), (
        f"{DOCUMENT} is out of date with the app's routes; regenerate it with "
        f"`python -m optimizer.service.openapi --out {DOCUMENT}` and commit it")


def test_every_v1_route_is_documented_with_typed_answers() -> None:
    doc = document()
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            if path.startswith("/v1/") and not path.endswith(("/export", "/events")):
                schema = op["responses"][next(c for c in op["responses"] if c.startswith("2"))]
                ref = schema["content"]["application/json"]["schema"]
                assert "$ref" in ref, f"{method.upper()} {path}: untyped response {ref}"
