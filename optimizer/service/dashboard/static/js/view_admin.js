// Admin actions (shown to admin tokens only; the routes check the scope themselves):
// pause, resume, extend the budget.
(function () {
  "use strict";
  const TL = window.TL;
  TL.views.admin = {
    render(body, b, ctx) {
      const el = TL.el;
      const c = b.campaign;
      if (!body.dataset.built) {
        body.dataset.built = "1";
        const msg = el("span", { id: "admin-msg", class: "muted" });
        const run = async (path, payload) => {
          msg.textContent = "…";
          try {
            const r = await TL.api("/v1/campaigns/" + TL.enc(ctx.name) + path, {
              method: "POST", body: JSON.stringify(payload || {}),
              headers: { "Content-Type": "application/json" } });
            msg.textContent = r.previous_status + " → " + r.status +
              (r.config_version ? " (config version " + r.config_version + ")" : "");
          } catch (e) { msg.textContent = "refused: " + e.message; }
          ctx.refresh();
        };
        const budget = el("input", { id: "budget-total", type: "number", min: "1", style: "width:100px" });
        body.append(el("div", { class: "toolbar" },
          el("button", { id: "btn-pause", class: "danger", text: "Pause",
                         onclick: () => run("/pause", { reason: "paused from the dashboard" }) }),
          el("button", { id: "btn-resume", class: "primary", text: "Resume", onclick: () => run("/resume") }),
          el("span", { class: "muted", text: "budget total" }), budget,
          el("button", { id: "btn-budget", text: "Set budget",
                         onclick: () => run("/budget", { total: Number(budget.value) }) }),
          msg));
      }
      body.querySelector("#btn-pause").disabled = c.status !== "active";
      body.querySelector("#btn-resume").disabled = c.status !== "paused";
      const input = body.querySelector("#budget-total");
      if (document.activeElement !== input) input.value = String(c.budget);
    },
  };
})();
