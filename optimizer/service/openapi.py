"""The service's OpenAPI document: served at ``GET /openapi.json`` (a ``read`` token, like every
route but the health checks) and written to a file for the repository:

    python -m optimizer.service.openapi --out docs/service-openapi.json

The committed ``docs/service-openapi.json`` is checked against the app's document by a test;
rerun this command after changing a route or a schema. The output is stable: sorted keys,
indent 2, a trailing newline.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from optimizer.service.auth import need_read

#: Where the document is committed, relative to the repository root.
DOCUMENT = Path("docs/service-openapi.json")

router = APIRouter(tags=["operations"])


@router.get("/openapi.json", include_in_schema=False, dependencies=[Depends(need_read)])
def openapi_json(request: Request) -> JSONResponse:
    """The app's OpenAPI document."""
    return JSONResponse(request.app.openapi())


def document() -> dict[str, Any]:
    """The app's OpenAPI document (built over an unconnected store: no database is needed)."""
    from optimizer.service.app import create_app
    from storage import Storage

    return create_app(Storage(sa.create_engine("sqlite://"))).openapi()


def render(doc: dict[str, Any]) -> str:
    """The document as committed: sorted keys, indent 2, trailing newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``--out PATH``: write the document there (default: stdout)."""
    parser = argparse.ArgumentParser(prog="python -m optimizer.service.openapi",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    text = render(document())
    if args.out is None:
        print(text, end="")
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
