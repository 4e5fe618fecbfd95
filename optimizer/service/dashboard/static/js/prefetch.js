// Starts the campaign page's first reads at once, before Plotly (~4 MB of script) is parsed:
// the server builds the data while the browser loads the views. page_campaign.js reads them.
(function () {
  "use strict";
  if (window.TL_EMBED) return; // the self-contained file carries its data
  const opts = { credentials: "same-origin", headers: { "X-Tiltloop-Dashboard": "1", Accept: "application/json" } };
  const name = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  window.TL_PREFETCH = {
    whoami: fetch("/v1/whoami", opts),
    bundle: fetch("/v1/campaigns/" + encodeURIComponent(name) + "/dashboard", opts),
  };
})();
