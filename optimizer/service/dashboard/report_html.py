"""The campaign page as one self-contained HTML file (``tiltloop report``, ``tiltloop dashboard
--html``): the same page, the same view scripts and stylesheet inlined, ``plotly.min.js``
inlined from the installed ``plotly`` package, and the data
(:func:`optimizer.service.dashboard.data.campaign_bundle`) embedded as ``window.TL_EMBED``. The
page script sees the embedded data and draws from it instead of the API (no live updates, no
export buttons, no admin actions): one implementation of each view for both.

    >>> with Storage.open(url) as st:                                    # doctest: +SKIP
    ...     write_dashboard_report(st, "demo", Path("demo.html"))
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from optimizer.service.dashboard.data import campaign_bundle
from optimizer.service.dashboard.routes_dashboard import STATIC, plotly_js
from storage import Storage

#: The file name ``tiltloop report`` and ``tiltloop dashboard --html`` write.
REPORT_FILE = "report.html"
_SCRIPT = re.compile(r'<script src="/static/(?P<path>[^"]+)"></script>')
_STYLE = re.compile(r'<link rel="stylesheet" href="/static/(?P<path>[^"]+)">')


def _inline_js(text: str) -> str:
    # "</script" inside a script would end it early: only ever inside a string in our assets
    return text.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")


def _asset(path: str) -> str:
    if path == "vendor/plotly.min.js":
        return plotly_js().read_text(encoding="utf-8")
    return (STATIC / path).read_text(encoding="utf-8")


def render_dashboard_report(storage: Storage, name: str) -> str:
    """The campaign page of ``name`` with its data, as one HTML document (no network needed).

    Raises:
        NotFound: no campaign ``name``.
    """
    bundle = campaign_bundle(storage, name)
    embed = {"name": name, "bundle": bundle,
             "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    data = json.dumps(embed, separators=(",", ":"), allow_nan=False)
    # inside <script>: no "</" (ends the element) nor "<!--"; JSON allows "\/" and "\u003c"
    data = data.replace("<", "\\u003c")
    page = (STATIC / "campaign.html").read_text(encoding="utf-8")
    page = _STYLE.sub(lambda m: f"<style>\n{_asset(m['path'])}\n</style>", page)
    scripts = iter(_SCRIPT.finditer(page))
    first = next(scripts, None)
    if first is None:
        raise RuntimeError("campaign.html has no script to inline")
    page = _SCRIPT.sub(lambda m: f"<script>\n{_inline_js(_asset(m['path']))}\n</script>", page)
    marker = "<main id=\"app\"></main>"
    return page.replace(marker, f"{marker}\n<script>window.TL_EMBED = {data};</script>", 1)


def write_dashboard_report(storage: Storage, name: str, out: Path) -> Path:
    """Write :func:`render_dashboard_report` to ``out`` (its folder is created); returns it."""
    out = Path(out)
    page = render_dashboard_report(storage, name)  # first: a bad name leaves nothing behind
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
