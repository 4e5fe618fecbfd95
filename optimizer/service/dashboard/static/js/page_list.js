// The campaign list page: read /v1/campaigns, refresh every 5 s.
(function () {
  "use strict";
  const TL = window.TL;
  const root = document.getElementById("app");
  async function refresh() {
    try {
      const data = await TL.api("/v1/campaigns");
      TL.views.list.render(root, data.items || []);
      document.body.dataset.ready = "1";
    } catch (e) {
      root.textContent = "";
      root.append(TL.el("p", { class: "warning", text: "Could not read the campaigns: " + e.message }));
    }
  }
  refresh();
  setInterval(refresh, 5000);
})();
