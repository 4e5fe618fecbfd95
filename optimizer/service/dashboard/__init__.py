"""The campaign dashboard: HTML pages and their views (one JS module per view) served by the
service at ``/`` (``routes_dashboard``), the data they read (``data``, ``routes_dashboard_data``),
``tiltloop dashboard`` (a read-only local view, ``cli``) and the same views rendered into one
self-contained HTML file (``report_html``: ``tiltloop report``, ``tiltloop dashboard --html``)."""
