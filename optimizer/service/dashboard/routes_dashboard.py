"""The dashboard's pages: ``/login`` (a form taking a token → the session cookie), ``/logout``,
``/`` (the campaign list), ``/campaigns/{name}`` (one campaign) and their static assets under
``/static/…`` (the views' JS and CSS from this package; ``/static/vendor/plotly.min.js`` from the
installed ``plotly`` Python package: no CDN, the machine may have no internet).

The pages are empty shells: every number they show is read by their scripts from the
authenticated ``/v1`` routes (with the session cookie). A page requested without a valid session
redirects to ``/login``. The login page, the static assets and ``/logout`` need no token; they
hold no data. The token is never written into a page or a response: the cookie is ``HttpOnly``.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from optimizer.service.auth import SESSION_COOKIE, TokenVerifier, session_principal
from optimizer.service.views import CampaignName

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: How long the session cookie lives in the browser (seconds); the token's own revocation ends
#: it sooner.
SESSION_MAX_AGE_S = 12 * 3600
#: The most bytes a login form may have.
_MAX_FORM = 4096
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8"}
#: Pages are not cached and cannot be framed (clickjacking of the admin buttons).
_PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                 "Content-Security-Policy": "frame-ancestors 'none'",
                 "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}


def plotly_js() -> Path:
    """The ``plotly.min.js`` bundled with the installed ``plotly`` package."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall the `plotly` package "
                                f"(`pip install 'plotly>=5,<8'`)")
    return path


@lru_cache(maxsize=8)
def _page(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _html(name: str, code: int = 200) -> HTMLResponse:
    page = _page(name)
    if code == status.HTTP_401_UNAUTHORIZED:  # the login form again, its message shown
        page = page.replace(" hidden data-error", " data-error")
    return HTMLResponse(page, status_code=code, headers=_PAGE_HEADERS)


def _to_login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/login")
def login_page() -> HTMLResponse:
    return _html("login.html")


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the form's ``token``; a valid one is stored in the session cookie (303 to ``next``,
    a local path, else ``/``); a wrong one gets the form again with 401 and no detail."""
    body = await request.body()
    if len(body) > _MAX_FORM:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail="the login form is too large")
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
    token = (form.get("token") or [""])[0].strip()
    target = (form.get("next") or ["/"])[0]
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = "/"  # only a path of this site: no open redirect
    verifier: TokenVerifier = request.app.state.verifier
    principal = verifier.verify(token) if token else None
    if principal is None:
        log.info("dashboard login refused (unknown, revoked or malformed token)")
        return _html("login.html", code=status.HTTP_401_UNAUTHORIZED)
    log.info("dashboard login: token %s (%s)", principal.prefix, ",".join(principal.scopes))
    response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_MAX_AGE_S, path="/",
                        httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """End the browser's session (the token itself stays valid: revoke it with the CLI)."""
    response = _to_login()
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response


@router.get("/")
def campaigns_page(request: Request) -> Response:
    if session_principal(request) is None:
        return _to_login()
    return _html("list.html")


@router.get("/campaigns/{name}")
def campaign_page(name: CampaignName, request: Request) -> Response:
    if session_principal(request) is None:
        return _to_login()
    return _html("campaign.html")


@router.get("/static/vendor/plotly.min.js")
def plotly_asset() -> FileResponse:
    return FileResponse(plotly_js(), media_type=_TYPES[".js"],
                        headers={"Cache-Control": "public, max-age=86400"})


@router.get("/static/{path:path}")
def static_asset(path: str) -> FileResponse:
    """A file of this package's ``static`` folder (no path outside it, no listing)."""
    target = (STATIC / path).resolve()
    if (STATIC.resolve() not in target.parents or not target.is_file()
            or target.suffix not in _TYPES):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such asset")
    return FileResponse(target, media_type=_TYPES[target.suffix],
                        headers={"Cache-Control": "no-cache"})
